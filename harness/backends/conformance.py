"""The conformance suite: what every backend must do, checked against the backend itself.

``harness check-backend NAME`` (or :func:`check_backend` from a test) runs it in a child process that loads only
that backend. It exercises every hook the backend's scenarios call (its own,
:func:`harness.backends.loading.required_hooks`, or the core's answer where it leaves one out,
:mod:`harness.backends.defaults`) on a tiny case (width 0.125, 32 px, 10 classes) and checks what each returns, in
the shapes the core reads, that the train step's ``save``/``load`` resume exactly (``supports["checkpoint"]``), that
every export format exports and that ``harness_synchronize`` waits for queued work; then, for every model it
declares (or ``model``), the golden checks of :mod:`harness.backends.golden`: what the network computes against the
NumPy reference and the golden values shipped with harness. A backend that only loads
exports (an inference runtime) is given exports of the tiny model made first by ``export_from``, in a process of
its own. Each check passes, fails with one line saying what was wrong, or is skipped with why.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.backends.child import report_errors, run_json
from harness.backends.conformance_checks import (
    Checks,
    check_weights,
    expect,
    expect_raises,
    train_state_checks,
    waits,
    weights_equal,
)
from harness.backends.golden import golden_checks
from harness.backends.hook_checks import (
    batch_template,
    check_counts,
    check_export,
    check_info,
    check_logits,
    check_probe,
    check_session,
    export_formats,
    export_stem,
    loads_exports_only,
    model_file_for,
    scenarios_of,
    supports_of,
)
from harness.backends.loading import load_backend
from harness.config import DEVICES, Case, Settings
from harness.data.splits import PAD_LABEL
from harness.errors import HarnessError
from harness.models.specs import MODELS, get_model

__all__ = ["check_backend", "run_checks", "tiny_case"]

_BATCHES = (1, 4)


def tiny_case(backend: str, device: str, model: str, **settings: Any) -> Case:
    """The small case the checks run: every hook on it takes seconds on a CPU."""
    batch = 6 if get_model(model).repeats > 1 else 4
    s = Settings(width=0.125, image_size=32, num_classes=10, batch_size=batch, warmup=1, steps=2, threads=1,
                 eval_batches=2, workers=0, inference_batch_sizes=_BATCHES, **settings)
    return Case(name=f"conformance-{backend}", model=model, backend=backend, device=device, settings=s)


def run_checks(name: str, device: str = "cpu", model: str | None = None,
               model_file: str | None = None, golden_only: bool = False) -> list[dict[str, str]]:
    """In this process: load backend ``name`` and check its hooks on a tiny case on ``device`` (``golden_only``: the
    loading, setup and golden checks only, not every scenario's hooks)."""
    checks = Checks()
    pm = checks("load: entry point, hook names and signatures, required hooks", lambda: load_backend(name))
    if pm is None:
        return checks.results
    hook = pm.hook
    info = checks("harness_backend_info", lambda: check_info(name, hook.harness_backend_info()))
    if info is None:
        return checks.results
    checks("backend models are harness models", lambda: expect(
        set(info["models"]) <= set(MODELS), f"unknown models: {sorted(set(info['models']) - set(MODELS))}"))
    for d in DEVICES:
        checks(f"harness_probe_device({d})", lambda d=d: check_probe(name, d, hook.harness_probe_device(device=d)))
    status = hook.harness_probe_device(device=device)
    if not status.get("available"):
        checks.results.append({"check": f"device {device}", "status": "skip", "detail": status.get("reason", "")})
        return checks.results
    scenarios = scenarios_of(info)
    golden_models = [model] if model else list(info["models"])
    model = model or info["models"][0]
    case = tiny_case(name, device, model)
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # frameworks write into the working folder
        try:
            dev = checks("harness_setup", lambda: hook.harness_setup(case=case))
            if dev is None:
                return checks.results
            checks("harness_synchronize returns True", lambda: expect(
                hook.harness_synchronize(device=dev) is True, "harness_synchronize must return True"))
            checks("harness_environment", lambda: expect(
                all(isinstance(p, dict) for p in hook.harness_environment(case=case, device=dev)),
                "every harness_environment result must be a dict"))
            if any(s in scenarios for s in ("train", "eval", "export")) and not golden_only:
                _model_checks(checks, hook, name, case, dev, info, scenarios, tmp)
            if "inference" in scenarios and not golden_only:
                _inference_checks(checks, hook, name, case, dev, info, scenarios, model_file)
            golden_checks(checks, hook, name, info, device, dev, golden_models)
        finally:
            os.chdir(cwd)
    return checks.results


def _model_checks(checks: Checks, hook: Any, name: str, case: Case, dev: Any, info: dict[str, Any],
                  scenarios: list[str], tmp: str) -> None:
    s = case.settings
    net = checks("harness_build_model", lambda: hook.harness_build_model(case=case, device=dev))
    if net is None:
        return
    rng = np.random.default_rng(0)
    images = rng.standard_normal((s.batch_size, 3, s.image_size, s.image_size), dtype=np.float32)
    labels = rng.integers(0, s.num_classes, s.batch_size).astype(np.int64)
    checks("harness_predict: (batch, classes) float logits, deterministic", lambda: expect(np.array_equal(
        check_logits(name, "harness_predict", hook.harness_predict(case=case, model=net, device=dev, images=images),
                     s.batch_size, s.num_classes),
        hook.harness_predict(case=case, model=net, device=dev, images=images)), "two calls gave different logits"))
    weights = checks("harness_get_weights: neutral names to arrays", lambda: check_weights(
        hook.harness_get_weights(case=case, model=net)))
    if weights is not None:
        checks("harness_set_weights: round trip", lambda: expect(
            hook.harness_set_weights(case=case, model=net, weights=weights) is True
            and weights_equal(weights, hook.harness_get_weights(case=case, model=net)),
            "weights read back differ from those set"))
        first = next(iter(weights))
        bad = {**weights, first: np.zeros((3, 1, 4), dtype=np.float32)}
        checks("harness_set_weights refuses a wrong shape with HarnessError",
               lambda: expect_raises(lambda: hook.harness_set_weights(case=case, model=net, weights=bad), first))
        path = os.path.join(tmp, "ckpt")
        checks("harness_write_checkpoint / harness_read_checkpoint: exact round trip", lambda: expect(weights_equal(
            weights, hook.harness_read_checkpoint(path=hook.harness_write_checkpoint(weights=weights, path=path))),
            "the checkpoint read back differs from the weights written"))
        missing = os.path.join(tmp, "missing.ckpt")
        checks("harness_read_checkpoint refuses a missing file with HarnessError",
               lambda: expect_raises(lambda: hook.harness_read_checkpoint(path=missing), "missing"))
    for split in ("train", "eval"):
        checks(f"harness_data({split}): synthetic stream with a length", lambda split=split: expect(
            len(hook.harness_data(case=case, split=split, device=dev)) >= 1, f"empty {split} stream"))
    batch = checks("harness_to_device", lambda: hook.harness_to_device(arrays=(images, labels), device=dev))
    eval_step = None
    if batch is not None:
        eval_step = hook.harness_eval_step(case=case, model=net, device=dev)
        checks("harness_eval_step + harness_to_host: [top1, top5, count]", lambda: expect(
            check_counts(name, hook.harness_to_host(value=eval_step(batch)))[2] == s.batch_size,
            f"count must be the batch size {s.batch_size}"))
        padded = labels.copy()
        padded[-1] = PAD_LABEL
        checks(f"harness_eval_step counts only labels >= 0 (the core pads with {PAD_LABEL})", lambda: expect(
            check_counts(name, hook.harness_to_host(value=eval_step(hook.harness_to_device(
                arrays=(images, padded), device=dev))))[2] == s.batch_size - 1,
            f"count must be {s.batch_size - 1} for a batch whose last label is {PAD_LABEL}"))
    if "train" in scenarios and batch is not None:
        def train() -> float:
            step = hook.harness_train_step(case=case, model=net, device=dev, total_steps=3, steps_per_epoch=3)
            before = hook.harness_get_weights(case=case, model=net)
            loss = hook.harness_to_host(value=step(batch))
            hook.harness_synchronize(device=dev)
            expect(isinstance(loss, float) and math.isfinite(loss), f"loss must be a finite float, got {loss!r}")
            expect(not weights_equal(before, hook.harness_get_weights(case=case, model=net)),
                    "a train step left every weight unchanged")
            return float(loss)
        checks("harness_train_step: finite loss, weights updated", train)

        def queue_steps() -> Callable[[], Any]:
            step = hook.harness_train_step(case=case, model=net, device=dev, total_steps=8, steps_per_epoch=8)
            hook.harness_to_host(value=step(batch))  # the first step may compile
            return lambda: [step(batch) for _ in range(3)][-1]
        checks("harness_synchronize waits for queued work (train steps)", lambda: waits(
            hook, dev, queue_steps(), lambda out: hook.harness_to_host(value=out)))
        if supports_of(info)["checkpoint"]:
            train_state_checks(checks, hook, case, dev, net, batch, tmp)
    elif eval_step is not None:
        checks("harness_synchronize waits for queued work (eval steps)", lambda: waits(
            hook, dev, lambda: [eval_step(batch) for _ in range(3)][-1], lambda out: hook.harness_to_host(value=out)))
    for fmt in sorted(export_formats(info)):
        def export(fmt: str = fmt) -> str:
            out = check_export(name, fmt, hook.harness_export(case=case, model=net, device=dev, fmt=fmt,
                                                              path=os.path.join(tmp, f"x_{fmt}"), batch=2))
            expect(os.path.isfile(os.path.join(tmp, out["path"])), f"no file {out['path']} beside the path")
            return f"{out['path']}, max |diff| {out['check'].get('max_abs_diff')}"
        checks(f"harness_export({fmt})", export)
    checks.model = net


def _inference_checks(checks: Checks, hook: Any, name: str, case: Case, dev: Any, info: dict[str, Any],
                      scenarios: list[str], model_file: str | None) -> None:
    s = case.settings
    net = checks.model
    exports = "export" in scenarios
    made: list[tuple[Any, Any]] = []  # (session, inputs)
    for runtime, fmt in (info.get("runtimes") or {}).items():
        for b in _BATCHES:
            def session_check(runtime: str = runtime, fmt: str | None = fmt, b: int = b) -> str:
                path = None
                if fmt and exports:
                    stem = os.path.abspath(export_stem(f"{runtime}_{fmt}", b))
                    out = check_export(name, fmt, hook.harness_export(case=case, model=net, device=dev, fmt=fmt,
                                                                      path=stem, batch=b))
                    path = os.path.abspath(out["path"])
                elif fmt:
                    if model_file is None:
                        raise HarnessError(f"no {fmt} file to load (give --model-file or --export-from)")
                    path = model_file_for(model_file, b)
                session = check_session(name, runtime, hook.harness_inference_session(
                    case=case, device=dev, model=net if exports else None, runtime=runtime, path=path, batch=b))
                x = np.random.default_rng(b).standard_normal((b, 3, s.image_size, s.image_size), dtype=np.float32)
                inputs = session.inputs(x)
                first = check_logits(name, f"{runtime} logits", session.logits(session.run(inputs)), b, s.num_classes)
                hook.harness_synchronize(device=dev)
                again = session.logits(session.run(inputs))
                expect(np.allclose(first, again, rtol=1e-5, atol=1e-5), "two runs on the same input differ")
                if net is not None:
                    own = hook.harness_predict(case=case, model=net, device=dev, images=x)
                    diff = float(np.max(np.abs(own - first)))
                    expect(diff <= 1e-3 * max(1.0, float(np.max(np.abs(own)))),
                            f"logits differ from harness_predict by {diff:.3g}")
                made.append((session, inputs))
                runtime_name: str = session.runtime
                return runtime_name
            checks(f"harness_inference_session({runtime}, batch {b})", session_check)
    if made and net is None:  # no train or eval step to queue: an inference session's runs
        session, inputs = made[-1]
        checks("harness_synchronize waits for queued work (inference runs)", lambda: waits(
            hook, dev, lambda: [session.run(inputs) for _ in range(3)][-1], session.logits))


def _export_here(source: str, device: str, model: str, fmt: str, folder: str) -> dict[str, Any]:
    """In this process: the tiny model of backend ``source`` exported as ``fmt`` at each check batch."""
    hook = load_backend(source).hook
    case = tiny_case(source, device, model)
    os.chdir(folder)
    dev = hook.harness_setup(case=case)
    net = hook.harness_build_model(case=case, device=dev)
    paths = {}
    for b in _BATCHES:
        out = hook.harness_export(case=case, model=net, device=dev, fmt=fmt,
                                  path=os.path.join(folder, export_stem(fmt, b)), batch=b)
        paths[b] = os.path.join(folder, out["path"])
    return {"template": batch_template(paths[_BATCHES[0]], _BATCHES[0])}


def check_backend(name: str, device: str = "cpu", model: str | None = None, export_from: str = "torch",
                  model_file: str | None = None, timeout: float = 900,
                  golden_only: bool = False) -> list[dict[str, str]]:
    """Run the conformance checks of backend ``name`` in a child process (exports made in another first);
    ``golden_only``: whether it computes the right network, not whether every hook keeps its contract."""
    from harness.backends.probe import probe_backend

    info = probe_backend(name)
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        if "error" not in info and model_file is None and not golden_only:
            formats = {f for f in (info.get("runtimes") or {}).values() if f}
            if loads_exports_only(info) and formats:
                fmt = sorted(formats)[0]
                made = run_json("harness.backends.conformance", ["--export", export_from, device,
                                                        model or info["models"][0], fmt, tmp],
                                what=f"export by '{export_from}' for the checks", timeout=timeout)
                model_file = made["template"]
        args = [name, device, model or "", model_file or "", "golden" if golden_only else ""]
        checks: list[dict[str, str]] = run_json("harness.backends.conformance", args, what=f"conformance of '{name}'",
                                                cwd=tmp, timeout=timeout)["checks"]
        return checks


def _main(argv: list[str]) -> dict[str, Any]:
    if argv[0] == "--export":
        return _export_here(*argv[1:6])
    name, device, model, model_file, only = [*argv, "", "", "", ""][:5]
    return {"checks": run_checks(name, device or "cpu", model or None, model_file or None, only == "golden")}


if __name__ == "__main__":
    report_errors(lambda: _main(sys.argv[1:]))
