"""``scenario: eval``: one timed evaluation pass (top-1/top-5 and images/s) of the built model."""
from __future__ import annotations

import math
from typing import Any

from ..contract import check_counts
from ..energy import energy_record
from ..errors import HarnessError
from ..timing import summarize
from .base import Context, Scenario

__all__ = ["Eval", "evaluate"]


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
    return ctx.metrics["eval"]["top1"]


class Eval(Scenario):
    name = "eval"
    help = "timed evaluation only (top-1/top-5, images/s)"

    def run(self, ctx: Context) -> None:
        from .export import export_after

        if ctx.place.rank == 0:
            ctx.phase = "eval"
            evaluate(ctx)
            ctx.save()
        export_after(ctx)
