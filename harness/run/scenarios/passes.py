"""The passes scenarios share: one timed evaluation pass (:func:`evaluate`, the eval scenario, and after training)
and the exports written after a case's measurement (:func:`export_after`, when ``export`` is set)."""
from __future__ import annotations

import math
import os
from typing import Any

from harness.backends.hook_checks import check_counts, check_export, export_stem
from harness.config import Settings, has_accuracy
from harness.errors import HarnessError
from harness.measure.energy import energy_record
from harness.measure.steps import summarize
from harness.run.scenarios.base import Context

__all__ = ["evaluate", "inference_batches", "export_model", "export_after"]


def evaluate(ctx: Context) -> float:
    """One timed pass over the eval split (every batch full: the core pads the last); returns top-1 (%).

    The first batch is run alone (compilation) and repeated untimed as warm-up; then every batch is timed, each
    interval holding the batch fetch and the step (the first batch was fetched before, so its interval holds the
    step alone)."""
    s, hook = ctx.settings, ctx.hook
    data = hook.harness_data(case=ctx.case, split="eval", device=ctx.device)
    n_batches = len(data) if s.eval_batches is None else min(len(data), s.eval_batches)
    step = hook.harness_eval_step(case=ctx.case, model=ctx.model, device=ctx.device)
    batches = iter(data)
    first = next(batches, None)
    if first is None:
        raise HarnessError("the eval data stream yielded no batches")
    loop = ctx.loop(energy=True)
    first_step_s = loop.prime(lambda: step(first), min(s.warmup, 3))
    outs: list[Any] = []

    def one(i: int) -> None:
        batch = first if i == 0 else next(batches, None)
        if batch is None:
            raise HarnessError(f"backend '{ctx.case.backend}': the eval stream ended after {i} batches, but its "
                               f"len() is {len(data)}")
        outs.append(step(batch))

    samples = loop.run(one, 0, n_batches, first_alone=False, phase="eval").samples
    counts = [check_counts(ctx.case.backend, hook.harness_to_host(value=o)) for o in outs]
    top1, top5, n = (math.fsum(c[k] for c in counts) for k in range(3))
    ctx.metrics["eval"] = {
        "top1": 100.0 * top1 / n if n else float("nan"),
        "top5": 100.0 * top5 / n if n else float("nan"),
        "images": int(n),
        "images_per_s": n / math.fsum(samples) if samples else float("nan"),
        "ms_per_step": summarize(samples),
        "first_step_s": first_step_s,
        "energy": energy_record(loop.energy_window, int(n)),
    }
    ctx.samples["eval_step_s"] = samples
    return float(ctx.metrics["eval"]["top1"])


def inference_batches(s: Settings) -> list[int]:
    """Batch sizes an inference case runs: those measured, and the eval batch when accuracy is measured."""
    return sorted(set(s.inference_batch_sizes) | ({s.batch_size} if has_accuracy(s) else set()))


def export_model(ctx: Context, fmt: str, batch: int | None) -> dict[str, Any]:
    out = check_export(ctx.case.backend, fmt, ctx.hook.harness_export(
        case=ctx.case, model=ctx.model, device=ctx.device, fmt=fmt,
        path=os.path.join(os.getcwd(), export_stem(fmt, batch)), batch=batch))
    return {**out, **({"batch": batch} if batch is not None else {})}


def export_after(ctx: Context, per_batch: list[int | None] | None = None) -> None:
    """Rank 0 exports the model in every ``settings.export`` format (once, or once per batch in ``per_batch``)."""
    formats = ctx.settings.export if ctx.place.rank == 0 else ()
    per_batch = per_batch or [None]
    exports: list[dict[str, Any]] = []
    for fmt in formats:
        ctx.phase = f"export {fmt}"
        for b in per_batch:
            ctx.progress("export", len(exports) + 1, len(formats) * len(per_batch), force=True)
            exports.append(export_model(ctx, fmt, b))
    if exports:
        ctx.metrics["export"] = exports
        ctx.save()
