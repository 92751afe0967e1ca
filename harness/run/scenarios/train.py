"""``scenario: train``: timed training (by ``steps`` after ``warmup``, or by ``epochs``), checkpointed and resumed
when asked, or time to accuracy (``target_top1``); then the trained weights' digest, an evaluation and exports."""
from __future__ import annotations

import hashlib
import math
import os
import time
from typing import Any

import numpy as np

from harness.backends.hook_checks import supports_of
from harness.backends.hookspecs import SCENARIO_HOOKS
from harness.config import Case, Settings
from harness.data.orders import forever
from harness.errors import HarnessError
from harness.measure.energy import energy_record
from harness.measure.profiles import profile_after
from harness.measure.steps import input_wait, summarize, throughput
from harness.models.flops import train_flops
from harness.run.checkpoints import Checkpoints, interval
from harness.run.loop import STOP
from harness.run.scenarios.base import Context, Scenario
from harness.run.scenarios.passes import evaluate, export_after

__all__ = ["Train"]

_PER_DEVICE_STATE = (".running_mean", ".running_var", ".num_batches_tracked")


def _open(ctx: Context) -> tuple[Any, int, int, Any]:
    """The train stream, its steps per epoch, the run's total steps (``epochs``, else warm-up + ``steps``) and the
    backend's train step."""
    s = ctx.settings
    data = ctx.hook.harness_data(case=ctx.case, split="train", device=ctx.device)
    per_epoch = len(data)
    if per_epoch < 1:
        raise HarnessError("train data has fewer images than one batch")
    if s.epochs is None:
        assert s.steps is not None, "steps or epochs"
        total = s.warmup + s.steps
    else:
        total = max(1, math.ceil(s.epochs * per_epoch))
    if total <= s.warmup:
        raise HarnessError(f"epochs={s.epochs} gives {total} steps, not more than warmup={s.warmup}")
    step = ctx.hook.harness_train_step(case=ctx.case, model=ctx.model, device=ctx.device, total_steps=total,
                                      steps_per_epoch=per_epoch)
    return data, per_epoch, total, step


def _record(ctx: Context, samples: list[float], first_step_s: float | None, total: int, per_epoch: int,
            losses: list[float]) -> None:
    """The train metrics and samples (``samples``: the timed steps'; ``losses``: every step's)."""
    s = ctx.settings
    ctx.metrics["train"] = {
        "images_per_s": throughput(s.batch_size, samples), "ms_per_step": summarize(samples),
        "first_step_s": first_step_s, "warmup_steps": s.warmup, "timed_steps": len(samples), "total_steps": total,
        "steps_per_epoch": per_epoch, "epochs": total / per_epoch,
        "loss_first": losses[0], "loss_last": losses[-1],
    }
    ctx.samples["train_step_s"] = samples
    ctx.samples["train_loss"] = losses[s.warmup:]


def _check_finite(losses: list[float]) -> None:
    """Fail the case as diverged at the first step (1-based) whose loss is NaN or infinite."""
    bad = next(((i, v) for i, v in enumerate(losses, 1) if not math.isfinite(v)), None)
    if bad is not None:
        raise HarnessError(f"diverged at step {bad[0]}: loss is {bad[1]}")


def _train(ctx: Context) -> None:
    """Training for ``steps`` or ``epochs``, checkpointed when asked and resumed from the newest checkpoint in the
    case folder (:mod:`harness.run.checkpoints`)."""
    s, hook, progress = ctx.settings, ctx.hook, ctx.progress
    data, per_epoch, total, step = _open(ctx)
    every = interval(ctx.case, per_epoch)
    store = Checkpoints(ctx.case, os.getcwd(), every, ctx.place.rank, ctx.place.world) if every else None
    done = 0
    saved: dict[str, Any] = {}
    found = store.latest() if store is not None else None
    if found is not None:
        done, path, saved = found
        progress("resume", done, total, force=True)
        step.load(str(path))
        data.start_at(done // per_epoch, done % per_epoch)
    losses: list[float] = list(saved.get("losses", []))  # host values of the steps before `done`
    samples: list[float] = list(saved.get("samples", []))
    resumes: list[dict[str, Any]] = list(saved.get("resumes", []))
    first_step_s = saved.get("first_step_s")
    pending: list[Any] = []  # device losses, read between steps only when a checkpoint needs them

    def to_host() -> bool:
        if pending:
            losses.extend(hook.harness_to_host(value=list(pending)))
            pending.clear()
        return all(math.isfinite(v) for v in losses)

    def save(i: int) -> None:
        state = {"losses": losses, "samples": samples, "first_step_s": first_step_s, "resumes": resumes}
        assert store is not None  # called only with checkpoints on
        store.save(i, per_epoch, state, step.save)

    def after(i: int) -> Any:
        if store is None or not store.due(i, total) or i == total:
            return False
        loop.flush()  # the samples so far go into the checkpoint
        if not to_host():
            return STOP  # diverged: recorded below, no checkpoint past the NaN
        progress("checkpoint", i, total, force=True)
        save(i)
        return True

    batches = forever(data)
    loop = ctx.loop(energy=True)
    waits: dict[int, float] = {}  # step -> host seconds spent waiting for its batch

    def one(i: int) -> None:
        t0 = time.perf_counter()
        batch = next(batches)
        waits[i] = time.perf_counter() - t0
        pending.append(step(batch))

    timed_before = len(samples)
    if done < total:  # (a run killed after its last checkpoint, in evaluation, has nothing left to train)
        first = loop.first(lambda: pending.append(step(next(batches))))
        if done == 0:
            first_step_s = first
        else:  # not a timed sample: it compiles again
            resumes.append({"step": done, "first_step_s": first})
        if after(done + 1) is not STOP:
            loop.run(one, done + 1, total, timed_from=s.warmup,
                     first_alone=False, phase="train", after=after, samples=samples)
        if to_host() and store is not None and len(losses) == total:
            save(total)
    _record(ctx, samples, first_step_s, total, per_epoch, losses)
    ctx.metrics["train"]["input"] = input_wait([waits[i] for i in sorted(waits) if i >= s.warmup],
                                               samples[timed_before:])
    ctx.metrics["train"]["energy"] = energy_record(loop.energy_window, s.batch_size * (len(samples) - timed_before))
    if store is not None:
        ctx.metrics["train"]["checkpoints"] = store.summary()
    if resumes:
        ctx.metrics["train"]["resumed"] = resumes
    ctx.trained = (step, batches)
    _check_finite(losses)


def _to_target(ctx: Context) -> None:
    """Time to accuracy, MLPerf style: the clock starts before the train data is touched and runs through every
    evaluation until top-1 reaches ``target_top1`` (or the run ends). Steps are timed by the same rules as
    training; evaluations run between steps, outside the timed intervals."""
    s = ctx.settings
    target = s.target_top1
    assert target is not None  # run only with a target
    t_start = time.perf_counter()
    data, per_epoch, total, step = _open(ctx)
    every = max(1, round(s.eval_every_epochs * per_epoch))
    batches = forever(data)
    pending: list[Any] = []
    evaluations: list[dict[str, float]] = []
    reached: list[dict[str, float]] = []

    def after(i: int) -> Any:
        if i % every and i != total:
            return False
        ctx.phase = "eval"
        top1 = evaluate(ctx)
        ctx.phase = "train"
        evaluations.append({"step": i, "epoch": i / per_epoch, "top1": top1,
                            "elapsed_s": time.perf_counter() - t_start})
        if top1 >= target:
            reached.append(evaluations[-1])
            return STOP
        return True

    loop = ctx.loop(energy=True)
    samples: list[float] = []
    first_step_s = loop.first(lambda: pending.append(step(next(batches))))
    if after(1) is not STOP:
        loop.run(lambda i: pending.append(step(next(batches))), 1, total, timed_from=s.warmup, first_alone=False,
                 phase="train", after=after, samples=samples)
    hit = reached[0] if reached else None
    ctx.metrics["time_to_accuracy"] = {
        "target_top1": s.target_top1, "reached": hit is not None, "time_s": hit["elapsed_s"] if hit else None,
        "epochs": hit["epoch"] if hit else None, "init_s": ctx.init_s, "evaluations": evaluations}
    losses = list(ctx.hook.harness_to_host(value=pending))
    _record(ctx, samples, first_step_s, len(pending), per_epoch, losses)
    ctx.trained = (step, batches)
    ctx.metrics["train"]["energy"] = energy_record(loop.energy_window, s.batch_size * len(samples))
    _check_finite(losses)


def _digest(ctx: Context) -> str:
    """The trained weights' identity (ranks must agree; runs compare). With several devices BatchNorm statistics
    are per device (each rank sees its own shard), so they are left out."""
    weights = ctx.hook.harness_get_weights(case=ctx.case, model=ctx.model)
    digest = hashlib.sha256()
    for name in sorted(k for k in weights if not ctx.place.distributed or not k.endswith(_PER_DEVICE_STATE)):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()


class Train(Scenario):
    name = "train"
    help = "timed training (steps or epochs; checkpoints; time to accuracy with target_top1), then evaluation"
    hooks = SCENARIO_HOOKS["train"]
    multi_device = True

    def check(self, s: Settings) -> None:
        if s.steps is None and s.epochs is None:
            raise HarnessError("steps: null trains for epochs; set steps or epochs")
        if s.checkpoint_every is not None and s.checkpoint_every_epochs is not None:
            raise HarnessError("checkpoint_every and checkpoint_every_epochs: set one of them, not both")
        if (s.checkpoint_every or s.checkpoint_every_epochs) and s.devices * s.nodes > 1 and s.checkpoint_keep < 2:
            raise HarnessError(f"checkpoint_keep: {s.checkpoint_keep}: a multi-device case keeps at least 2 (each "
                               "rank saves on its own; a kill can leave the ranks one checkpoint apart)")
        if s.target_top1 is not None:
            if s.checkpoint_every is not None or s.checkpoint_every_epochs is not None:
                raise HarnessError("checkpoint_every with target_top1: time to accuracy is measured on an "
                                   "uninterrupted run, so it does not checkpoint")
            if s.devices * s.nodes > 1:
                raise HarnessError("target_top1: time to accuracy runs on one device (devices: 1) in this version")

    def check_backend(self, case: Case, info: dict[str, Any], info_of: Any) -> None:
        s = case.settings
        if (s.checkpoint_every or s.checkpoint_every_epochs) and not supports_of(info)["checkpoint"]:
            raise HarnessError(f"checkpoint_every: backend '{case.backend}' does not save training checkpoints "
                               "(its info has no supports.checkpoint)")
        if s.profile and not supports_of(info)["profile"]:
            raise HarnessError(f"profile: backend '{case.backend}' has no profiler hook (its info has no "
                               "supports.profile)")

    def run(self, ctx: Context) -> None:
        ctx.phase = "train"
        (_train if ctx.settings.target_top1 is None else _to_target)(ctx)
        ctx.metrics["train"]["flops"] = train_flops(ctx.case.model, ctx.settings,
                                                    ctx.metrics["train"]["images_per_s"], ctx.result.get("env"),
                                                    ctx.case.device)
        ctx.metrics["weights_sha256"] = _digest(ctx)
        ctx.save()
        if ctx.place.rank == 0 and ctx.settings.eval and ctx.settings.target_top1 is None:
            ctx.phase = "eval"
            evaluate(ctx)
            ctx.save()
        export_after(ctx)
        if ctx.settings.profile and ctx.trained is not None:  # last: its steps train the model further
            profile_after(ctx, *ctx.trained)
            ctx.save()
