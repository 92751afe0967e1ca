"""Where the time goes: one profiled window of training steps, with the framework's own profiler, grouped into
neutral categories so that backends read side by side.

With ``profile: true`` a training case runs :data:`PROFILE_STEPS` more steps after everything it measured (the timed
steps, the weights' digest, the evaluation and the exports: the profiled steps train the model further and are never
among the timed samples). The backend's ``harness_profile`` hook runs them under its profiler, keeps the raw trace in
the case folder and returns the op table; the core times the window itself (:func:`profile_after`), groups the ops'
*self* time per step into :data:`CATEGORIES` by name rules that know both frameworks' op names (:func:`categorise`)
and stores ``metrics.train.profile``.

The ops' self times and the window's step time are measured apart, so their difference says how much the profiler
saw: ``attributed_s`` (the sum of every op's self time per step) against ``step_s`` (the window's wall time per
step). What no op covers (the framework's runtime between kernels, Python, an idle device) is ``unattributed_s``,
shown as its own row, never folded into a category. A case is *within tolerance* when the ops account for the step
time within :data:`TOLERANCE`.
"""
from __future__ import annotations

import csv
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from harness.errors import HarnessError, Unsupported, one_line

__all__ = [
    "CATEGORIES",
    "PROFILE_STEPS",
    "TOLERANCE",
    "TOP_OPS",
    "UNATTRIBUTED",
    "categorise",
    "check_profile",
    "profile_after",
    "profile_frame",
    "profile_section",
    "read_op_statistic",
    "summarise",
]

#: The neutral categories, in the order reports list them.
CATEGORIES = ("convolution", "matmul", "normalisation", "elementwise and activation", "pooling", "loss",
              "optimizer update", "data transfer", "communication", "host/other")
#: The row of the step time no op covers.
UNATTRIBUTED = "unattributed"
#: The ops' self times must add up to the profiled step time within this share of it.
TOLERANCE = 0.15
#: Steps in the profiled window.
PROFILE_STEPS = 5
#: Ops kept in the record, by self time.
TOP_OPS = 15

_I = re.IGNORECASE
#: Rules on an op's *scope* (its enclosing regions: torch's parent ops and ``Optimizer.step#SGD.step``,
#: MindSpore's ``Default/optimizer-Momentum/...``, ``.../loss-CrossEntropyLoss/...``): what runs inside the loss or
#: the optimizer belongs to it whatever the op is (an ``add`` of weight decay, a ``ReduceMax`` of the softmax).
SCOPE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("communication", re.compile(r"all_?reduce|all_?gather|reduce_?scatter|nccl|hccl|gloo|c10d::|alltoall|HcomAll",
                                 _I)),
    ("optimizer update", re.compile(r"(^|/)optimizer[-.#]", _I)),
    ("loss", re.compile(r"(^|/)loss-|cross_?entropy|nll_?loss|log_?softmax", _I)),
    ("pooling", re.compile(r"pool", _I)),
)
#: Rules on the op's own name, first match wins; what matches none is host/other (allocation, views, the
#: autograd engine's bookkeeping).
NAME_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("communication", SCOPE_RULES[0][1]),
    ("optimizer update", re.compile(r"_foreach_|ApplyMomentum|Momentum|\bsgd\b|SGD\.|adamw?\b|lamb|lars|thor", _I)),
    ("loss", re.compile(r"cross_?entropy|nll_?loss|log_?softmax|SoftmaxCrossEntropy|SparseSoftmax", _I)),
    ("convolution", re.compile(r"conv", _I)),
    ("matmul", re.compile(r"addmm|aten::mm\b|aten::bmm|matmul|BatchMatMul|aten::linear|\bgemm|\bDense\b", _I)),
    ("normalisation", re.compile(r"batch_?norm|layer_?norm|group_?norm|instance_?norm|\bbn_|L2Normalize|\bLRN", _I)),
    ("pooling", re.compile(r"pool", _I)),
    ("data transfer", re.compile(r"memcpy|memset|HtoD|DtoH|H2D|D2H|aten::_?to_copy|aten::copy_|aten::to\b|TensorMove|"
                                 r"aten::contiguous|aten::clone|aten::cat\b|Concat|Transpose|aten::constant_pad|"
                                 r"\bPad(V\d)?\b|aten::pad\b|Slice|StridedSlice|Tile", _I)),
    ("elementwise and activation", re.compile(
        r"relu|threshold|clamp|sigmoid|tanh|gelu|silu|swish|hardswish|softmax|\badd|\bsub|\bmul|\bdiv|realdiv|\bneg|"
        r"\bexp|\blog\b|aten::log|sqrt|rsqrt|pow|square|\babs|maximum|minimum|where|select|masked|fill|zero_|"
        r"\bcast\b|BiasAdd|AddN|AssignAdd|Assign\b|\bsum\b|aten::sum|aten::mean|ReduceSum|ReduceMean|ReduceMax|"
        r"\bequal|less|greater|floor|ceil|reciprocal|dropout|\bmax\b|\bmin\b", _I)),
)


def categorise(name: str, scope: str = "") -> str:
    """The neutral category of an op, from its scope (the regions it ran inside) and then its own name."""
    if scope:
        for category, rule in SCOPE_RULES:
            if rule.search(scope):
                return category
    for category, rule in NAME_RULES:
        if rule.search(name):
            return category
    return "host/other"


def check_profile(backend: str, value: Any) -> dict[str, Any]:
    """``harness_profile``'s answer: ``{"profiler": str, "ops": [{"name": str, "self_s": number >= 0,
    "calls": int, "scope": str (optional)}], "trace": str (a path in the case folder)}``."""
    def fail(what: str) -> HarnessError:
        shown = repr(value)
        shown = shown[:117] + "..." if len(shown) > 120 else shown
        return HarnessError(f"backend '{backend}': harness_profile returned {shown}: {what}")

    if not isinstance(value, dict) or not isinstance(value.get("profiler"), str):
        raise fail("expected a dict with 'profiler' (a string), 'ops' and 'trace'")
    ops = value.get("ops")
    if not isinstance(ops, list) or not ops:
        raise fail("'ops' must be a non-empty list of {name, self_s, calls}")
    for op in ops:
        if (not isinstance(op, dict) or not isinstance(op.get("name"), str)
                or not isinstance(op.get("self_s"), (int, float)) or isinstance(op.get("self_s"), bool)
                or not math.isfinite(op["self_s"]) or op["self_s"] < 0
                or not isinstance(op.get("calls", 0), int) or not isinstance(op.get("scope", ""), str)):
            raise fail(f"each op must be {{name: str, self_s: seconds >= 0, calls: int, scope: str}}, got {op!r}"[:300])
    if not isinstance(value.get("trace"), str):
        raise fail("'trace' must be the path of the raw trace it kept")
    return value


def summarise(ops: Iterable[dict[str, Any]], steps: int, step_s: float, profiler: str, trace: str,
              top: int = TOP_OPS) -> dict[str, Any]:
    """``metrics.train.profile`` from an op table (each op's self seconds over the whole window): the categories'
    seconds per step, the top ops, and how the ops' sum compares with the window's step time."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for op in ops:
        category = categorise(op["name"], op.get("scope", ""))
        entry = merged.setdefault((op["name"], category), {"name": op["name"], "category": category, "self_s": 0.0,
                                                          "calls": 0})
        entry["self_s"] += float(op["self_s"])
        entry["calls"] += int(op.get("calls", 0))
    categories = {c: 0.0 for c in CATEGORIES}
    for entry in merged.values():
        categories[entry["category"]] += entry["self_s"] / steps
    attributed = math.fsum(categories.values())
    ranked = sorted(merged.values(), key=lambda e: -e["self_s"])[:top]
    coverage = attributed / step_s if step_s > 0 else float("nan")
    return {
        "profiler": profiler, "steps": steps, "step_s": step_s,
        "categories": {c: s for c, s in categories.items() if s > 0},
        "attributed_s": attributed, "unattributed_s": max(0.0, step_s - attributed), "coverage": coverage,
        "tolerance": TOLERANCE, "within_tolerance": bool(abs(coverage - 1) <= TOLERANCE),
        "top_ops": [{"name": e["name"], "category": e["category"], "self_s_per_step": e["self_s"] / steps,
                     "calls": e["calls"]} for e in ranked],
        "distinct_ops": len(merged), "trace": trace,
    }


def read_op_statistic(path: str) -> list[dict[str, Any]]:
    """The op table of an Ascend profile (msprof's ``op_statistic.csv``, written by torch_npu's and MindSpore's
    profilers alike): ``OP Type``, ``Count`` and ``Total Time(us)`` per op type."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise Unsupported(f"profile: the profiler wrote no op table ({path}: {exc.strerror})") from None
    out = []
    for row in rows:
        name = row.get("OP Type") or row.get("Op Type") or row.get("op_type")
        total = row.get("Total Time(us)") or row.get("Total Time (us)")
        if name and total:
            out.append({"name": name, "self_s": float(total) / 1e6, "calls": int(float(row.get("Count") or 0))})
    return out


def profile_after(ctx: Any, step: Callable[[Any], Any], batches: Any) -> None:
    """The profiled window of a training case: :data:`PROFILE_STEPS` steps of ``step`` on the next ``batches``,
    run by the backend's ``harness_profile`` under its profiler and timed here (the device settled at both ends).
    A profiler this host or device cannot run (:class:`harness.Unsupported`) is recorded as skipped with its reason,
    and the case stays ok: its measurements do not depend on it."""
    steps = PROFILE_STEPS
    folder = "profile" if not ctx.place.distributed else os.path.join("profile", f"rank{ctx.place.rank}")
    os.makedirs(folder, exist_ok=True)
    window: list[float] = []
    losses: list[Any] = []

    def run_steps() -> None:
        if window:
            raise HarnessError("harness_profile called run_steps twice: it runs the window once")
        ctx.hook.harness_synchronize(device=ctx.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            losses.append(step(next(batches)))
        ctx.hook.harness_synchronize(device=ctx.device)
        window.append(time.perf_counter() - t0)

    ctx.phase = "profile"
    ctx.progress("profile", 0, steps, force=True)
    train = ctx.metrics.setdefault("train", {})
    try:
        raw = ctx.hook.harness_profile(case=ctx.case, device=ctx.device, run_steps=run_steps, folder=folder)
    except Unsupported as exc:
        train["profile"] = {"skipped": one_line(str(exc))}
        return
    raw = check_profile(ctx.case.backend, raw)
    if not window:
        raise HarnessError(f"backend '{ctx.case.backend}': harness_profile returned without calling run_steps")
    ctx.hook.harness_to_host(value=losses)  # the window's losses are discarded, but read: nothing left queued
    timed = (train.get("ms_per_step") or {}).get("p50")
    train["profile"] = {**summarise(raw["ops"], steps, window[0] / steps, raw["profiler"], raw["trace"]),
                        "timed_step_s": timed / 1e3 if isinstance(timed, (int, float)) else None}


# --- the report -------------------------------------------------------------------------------------------------

def _label(rec: dict[str, Any]) -> str:
    cfg = rec.get("config") or {}
    label = f"{cfg.get('backend')} / {cfg.get('device')}"
    variant = cfg.get("variant") or {}
    return label + (" (" + ", ".join(f"{k}={v}" for k, v in variant.items()) + ")" if variant else "")


def _cell(seconds: float | None, step: float) -> str:
    """ms per step and the share of the profiled step; empty for nothing."""
    if not seconds:
        return ""
    return f"{1e3 * seconds:.2f} ({100 * seconds / step:.0f}%)" if step > 0 else f"{1e3 * seconds:.2f}"


def profile_frame(records: Iterable[dict[str, Any]]) -> dict[str, tuple[Any, list[str]]]:
    """Per model: the "where the time goes" table (rows: categories, then unattributed and the step; columns: the
    model's backend x device cases; cells: ms/step and share of the profiled step) and one "sum vs step time" line
    per case (skipped profiles say why)."""
    import pandas as pd

    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in records:
        prof = ((rec.get("metrics") or {}).get("train") or {}).get("profile")
        if rec.get("kind", "measured") != "measured" or rec.get("status") != "ok" or not isinstance(prof, dict):
            continue
        cases = by_model.setdefault((rec.get("config") or {}).get("model", "?"), {})
        label = _label(rec)
        if label in cases:
            label += f" [{rec.get('case')}]"
        cases[label] = prof
    out: dict[str, tuple[Any, list[str]]] = {}
    for model, cases in sorted(by_model.items()):
        columns, lines = {}, []
        for label, prof in sorted(cases.items()):
            if "skipped" in prof:
                lines.append(f"- {label}: no profile: {prof['skipped']}")
                continue
            step = prof["step_s"]
            cats = prof.get("categories") or {}
            columns[label] = [_cell(cats.get(c), step) for c in CATEGORIES] + [
                _cell(prof.get("unattributed_s"), step), f"{1e3 * step:.2f}"]
            timed = prof.get("timed_step_s")
            verdict = ("within" if prof.get("within_tolerance") else "OUTSIDE") + f" ±{100 * prof['tolerance']:.0f}%"
            lines.append(f"- {label} ({prof['profiler']}, {prof['steps']} steps): ops sum to "
                         f"{1e3 * prof['attributed_s']:.2f} ms/step = {100 * prof['coverage']:.0f}% of the profiled "
                         f"step {1e3 * step:.2f} ms ({verdict}); unattributed "
                         f"{1e3 * prof['unattributed_s']:.2f} ms/step"
                         + (f"; timed steps' median {1e3 * timed:.2f} ms" if timed else "")
                         + f"; trace: `{prof['trace']}`")
        table = None
        if columns:
            table = pd.DataFrame(columns, index=[*CATEGORIES, f"{UNATTRIBUTED} (in no op)", "profiled step (ms)"])
            table = table[(table != "").any(axis=1)]
        out[model] = (table, lines)
    return out


def profile_section(records: Iterable[dict[str, Any]]) -> list[str]:
    """The report's "Where the time goes" section: markdown lines, nothing without profiles."""
    frames = profile_frame(records)
    if not frames:
        return []
    out = ["## Where the time goes", "",
           f"One profiled window of {PROFILE_STEPS} training steps after the timed ones (`profile: true`), with each "
           "framework's own profiler; each cell is the self time of the ops of a category in ms per step and its "
           "share of the profiled step. *Unattributed* is the part of the step in no op the profiler recorded (the "
           "framework's runtime between kernels, Python, an idle device). The ops must account for the profiled step "
           f"within ±{100 * TOLERANCE:.0f}%; the timed steps' median shows what the profiler itself cost.", ""]
    for model, (table, lines) in frames.items():
        out += [f"### {model}", ""]
        if table is not None and not table.empty:
            out += [table.to_markdown(tablefmt="github", disable_numparse=True), ""]
        out += [*lines, ""]
    return out
