"""``scenario: export``: the model written in ``settings.export`` formats, one file per inference batch size
(static-shape formats), for an inference case of a backend that only loads exports. Also the export helpers every
scenario uses (train and eval export after their measurement when ``export`` is set)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..config import Case, Settings, has_accuracy
from ..contract import check_export
from ..errors import HarnessError
from .base import Context, Scenario
from .evaluate import evaluate

__all__ = ["Export", "export_stem", "batch_template", "inference_batches", "export_model", "export_after", "export_case"]


def export_stem(fmt: str, batch: int | None) -> str:
    """The file name (without extension) of an export: ``model_<fmt>`` or ``model_<fmt>_b<batch>``."""
    return f"model_{fmt}" if batch is None else f"model_{fmt}_b{batch}"


def batch_template(path: str, batch: int) -> str:
    """An export's path with its batch size replaced by ``{batch}`` (``model_file`` takes such a template)."""
    return path.replace(f"_b{batch}.", "_b{batch}.")


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
    exports = []
    for fmt in formats:
        ctx.phase = f"export {fmt}"
        for b in per_batch:
            ctx.progress("export", len(exports) + 1, len(formats) * len(per_batch), force=True)
            exports.append(export_model(ctx, fmt, b))
    if exports:
        ctx.metrics["export"] = exports
        ctx.save()


class Export(Scenario):
    name = "export"
    help = "exports (one per inference batch size) that an inference case of another backend loads"
    hooks = (*Scenario.hooks, "harness_export")

    def check(self, settings: Settings) -> None:
        if not settings.export:
            raise HarnessError("scenario export: set export to the formats to write (e.g. export: [onnx])")

    def run(self, ctx: Context) -> None:
        if has_accuracy(ctx.settings):  # the framework's own accuracy, beside the runtime's later
            ctx.phase = "eval"
            evaluate(ctx)
            ctx.save()
        export_after(ctx, list(inference_batches(ctx.settings)))


def export_case(case: Case, backend: str, fmt: str) -> Case:
    """The export case that makes ``fmt`` files of ``case``'s model and weights on ``backend``."""
    s = dataclasses.replace(case.settings, scenario="export", export=(fmt,), runtime=None)
    return dataclasses.replace(case, name=f"{case.name} [export]", backend=backend, settings=s)
