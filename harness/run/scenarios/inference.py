"""``scenario: inference``: latency and throughput of the model in ``settings.runtime``, and the exported model's
accuracy beside the framework's own evaluation of the same weights.

A runtime that loads an export gets one made per batch size: by this backend when it builds models, else by
``export_from`` in a case of its own that runs first (:meth:`Inference.prerequisite`)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from harness.backends.hook_checks import (
    batch_template,
    check_logits,
    check_session,
    export_format_for,
    inference_runtime,
    loads_exports_only,
    model_file_for,
    scenarios_of,
)
from harness.backends.hookspecs import SCENARIO_HOOKS
from harness.config import Case, has_accuracy
from harness.data.splits import eval_arrays
from harness.errors import HarnessError, near
from harness.measure.energy import energy_record
from harness.measure.steps import summarize, throughput
from harness.models.specs import get_model
from harness.run.scenarios.base import Context, Scenario
from harness.run.scenarios.export import export_case
from harness.run.scenarios.passes import evaluate, export_model, inference_batches

__all__ = ["Inference"]


def _time_runs(ctx: Context, session: Any, images: np.ndarray) -> tuple[list[float], float, dict[str, Any]]:
    """The first run alone, untimed warm-up (``warmup`` runs and ``latency_warmup_s`` seconds), then timed runs
    until both ``latency_min_runs`` and ``latency_min_s`` are met; with the device's energy over the timed runs
    (:mod:`harness.measure.energy`)."""
    s = ctx.settings
    inputs = session.inputs(images)
    loop = ctx.loop(energy=True)
    first = loop.prime(lambda: session.run(inputs), s.warmup, s.latency_warmup_s)
    timed = loop.run(lambda i: session.run(inputs), first_alone=False, phase="inference",
                     min_runs=s.latency_min_runs, min_s=s.latency_min_s)
    return timed.samples, first, energy_record(loop.energy_window, len(images) * len(timed.samples))


def _accuracy(ctx: Context, session: Any, batch: int) -> dict[str, Any]:
    """Top-1/top-5 of the session over the eval split (host arrays, the last batch padded to the session's batch),
    and, where the framework model is here, how far its logits are from the framework's on the same images."""
    s, name, model = ctx.settings, ctx.case.backend, ctx.model
    spec = get_model(ctx.case.model)
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
            own = check_logits(name, "harness_predict", ctx.hook.harness_predict(
                case=ctx.case, model=model, device=ctx.device, images=images), k, s.num_classes)
            agree += int((own.argmax(axis=1) == ranked[:, 0]).sum())
            max_diff = max(max_diff, float(np.max(np.abs(own - logits))))
    acc: dict[str, Any] = {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": n}
    if model is not None:
        acc["top1_agreement"] = 100.0 * agree / n
        acc["max_abs_logit_diff"] = max_diff
    return acc


class Inference(Scenario):
    name = "inference"
    help = "latency and throughput in a runtime (exported first when it loads exports), and its accuracy"
    hooks = SCENARIO_HOOKS["inference"]

    # One device only: Scenario.multi_device is False, which harness.run.scenarios.check_settings enforces for
    # every scenario (a second check of it here repeated that rule with its own message).

    def check_backend(self, case: Case, info: dict[str, Any], info_of: Any) -> None:
        s, runtimes = case.settings, info.get("runtimes") or {}
        runtime = inference_runtime(info, s.runtime)
        if runtime not in runtimes:
            raise HarnessError(f"runtime '{runtime}': backend '{case.backend}' has "
                               f"{', '.join(runtimes) or 'no runtimes'}{near(str(runtime), runtimes)}")
        fmt = export_format_for(info, s.runtime)
        if fmt is not None and s.model_file:
            for b in inference_batches(s):
                path = model_file_for(s.model_file, b)
                if not os.path.isfile(path):
                    raise HarnessError(f"model_file '{path}': no such file")
        if fmt is None or s.model_file or not loads_exports_only(info):
            return
        source = info_of(s.export_from)
        if "export" not in scenarios_of(source):
            raise HarnessError(f"export_from '{s.export_from}': that backend does not run scenario export")
        formats = (source.get("supports") or {}).get("export", [])
        if fmt not in formats:
            raise HarnessError(f"export_from '{s.export_from}': runtime '{runtime}' loads {fmt}, which backend "
                               f"'{s.export_from}' does not export (it exports: {', '.join(formats) or 'nothing'})")

    def builds_model(self, info: dict[str, Any]) -> bool:
        return not loads_exports_only(info)

    def prerequisite(self, case: Case, info: dict[str, Any]) -> Case | None:
        fmt = export_format_for(info, case.settings.runtime)
        if fmt is None or case.settings.model_file or not loads_exports_only(info):
            return None
        return export_case(case, case.settings.export_from, fmt)

    def after_prerequisite(self, case: Case, made: dict[str, Any], folder: str) -> tuple[Case, dict[str, Any]]:
        e = made["metrics"]["export"][0]
        template = batch_template(os.path.join(os.path.abspath(folder), e["path"]), e["batch"])
        case = dataclasses.replace(case, settings=dataclasses.replace(case.settings, model_file=template))
        return case, {"export_from": {"backend": case.settings.export_from, "env": made.get("env", {}),
                                      "eval": made["metrics"].get("eval"), "export": made["metrics"]["export"]}}

    def merge(self, result: dict[str, Any], extra: dict[str, Any]) -> None:
        """The framework's own evaluation of the weights it exported, beside the runtime's."""
        metrics = result.setdefault("metrics", {})
        metrics.update(extra)
        own = (extra["export_from"].get("eval") or {}).get("top1")
        if own is not None and "accuracy" in metrics.get("inference", {}):
            metrics["inference"]["accuracy"]["framework_top1"] = own

    def run(self, ctx: Context) -> None:
        s, info = ctx.settings, ctx.info
        if ctx.model is not None and has_accuracy(s):  # the framework's own evaluation of the same weights
            ctx.phase = "eval"
            evaluate(ctx)
            ctx.save()
        ctx.phase = "inference"
        runtime = inference_runtime(info, s.runtime) or ""  # (a backend that runs inference names runtimes)
        fmt = info["runtimes"][runtime]
        if fmt is not None and ctx.model is None and not s.model_file:
            raise HarnessError(f"runtime '{runtime}' loads a {fmt} export: set model_file, or run it through "
                               "`harness run` (which exports with export_from)")
        out: dict[str, Any] = {"runtime": runtime, "format": fmt, "throughput": []}
        ctx.metrics["inference"] = out
        exports: list[dict[str, Any]] = []
        measure = sorted(set(s.inference_batch_sizes))
        rng = np.random.default_rng(s.seed + 3)
        batch_sizes = inference_batches(s)
        for i, b in enumerate(batch_sizes):
            path = None
            if fmt is not None and ctx.model is not None:
                ctx.progress("export", i + 1, len(batch_sizes), force=True)
                exports.append(export_model(ctx, fmt, b))
                path = os.path.join(os.getcwd(), exports[-1]["path"])
            elif fmt is not None and s.model_file:  # (its files were checked when the suite loaded)
                path = model_file_for(s.model_file, b)
            session = check_session(ctx.case.backend, runtime, ctx.hook.harness_inference_session(
                case=ctx.case, device=ctx.device, model=ctx.model, runtime=runtime, path=path, batch=b))
            out["runtime_detail"] = session.runtime
            if b in measure:
                images = rng.standard_normal((b, 3, s.image_size, s.image_size), dtype=np.float32)
                check_logits(ctx.case.backend, f"{runtime} session logits",
                             session.logits(session.run(session.inputs(images))), b, s.num_classes)
                samples, first, energy = _time_runs(ctx, session, images)
                ctx.progress("inference", measure.index(b) + 1, len(measure), force=True)
                out["throughput"].append({"batch_size": b, "images_per_s": throughput(b, samples),
                                          "ms_per_batch": summarize(samples), "first_run_s": first,
                                          "energy": energy})
                ctx.samples[f"inference_b{b}_s"] = samples
                if b == 1:
                    out["latency_ms"] = summarize(samples)
            if b == s.batch_size and has_accuracy(s):
                out["accuracy"] = _accuracy(ctx, session, b)
                if "eval" in ctx.metrics:
                    out["accuracy"]["framework_top1"] = ctx.metrics["eval"]["top1"]
            del session
        if out["throughput"]:
            out["images_per_s"] = max(out["throughput"], key=lambda t: t["batch_size"])["images_per_s"]
        if exports:
            ctx.metrics["export"] = exports
        ctx.save()
