"""``scenario: eval``: one timed evaluation pass (top-1/top-5 and images/s) of the built model."""
from __future__ import annotations

from harness.backends.hookspecs import SCENARIO_HOOKS
from harness.run.scenarios.base import Context, Scenario
from harness.run.scenarios.passes import evaluate, export_after

__all__ = ["Eval"]


class Eval(Scenario):
    name = "eval"
    help = "timed evaluation only (top-1/top-5, images/s)"
    hooks = SCENARIO_HOOKS["eval"]

    def run(self, ctx: Context) -> None:
        if ctx.place.rank == 0:
            ctx.phase = "eval"
            evaluate(ctx)
            ctx.save()
        export_after(ctx)
