"""``scenario: export``: the model written in ``settings.export`` formats, one file per inference batch size
(static-shape formats), for an inference case of a backend that only loads exports."""
from __future__ import annotations

import dataclasses

from harness.backends.hookspecs import SCENARIO_HOOKS
from harness.config import Case, Settings, has_accuracy
from harness.errors import HarnessError
from harness.run.scenarios.base import Context, Scenario
from harness.run.scenarios.passes import evaluate, export_after, inference_batches

__all__ = ["Export", "export_case"]


class Export(Scenario):
    name = "export"
    help = "exports (one per inference batch size) that an inference case of another backend loads"
    hooks = SCENARIO_HOOKS["export"]  # and harness_export, called for by the formats it declares

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
