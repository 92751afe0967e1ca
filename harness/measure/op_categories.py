"""Where a profiled step's time goes, in neutral categories: the name rules that put an op of either framework
into one of :data:`CATEGORIES` (:func:`categorise`, from the op's scope and then its own name) and the summary of a
profiler's op table that a training case stores as ``metrics.train.profile`` (:func:`summarise`).

The ops' self times and the window's step time are measured apart, so their difference says how much the profiler
saw: ``attributed_s`` (the sum of every op's self time per step) against ``step_s`` (the window's wall time per
step). What no op covers (the framework's runtime between kernels, Python, an idle device) is ``unattributed_s``,
shown as its own row, never folded into a category. A case is *within tolerance* when the ops account for the step
time within :data:`TOLERANCE`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["CATEGORIES", "NAME_RULES", "SCOPE_RULES", "TOLERANCE", "TOP_OPS", "UNATTRIBUTED", "categorise",
           "summarise"]


#: The neutral categories, in the order reports list them.
CATEGORIES = ("convolution", "matmul", "normalisation", "elementwise and activation", "pooling", "loss",
              "optimizer update", "data transfer", "communication", "host/other")
#: The row of the step time no op covers.
UNATTRIBUTED = "unattributed"
#: The ops' self times must add up to the profiled step time within this share of it.
TOLERANCE = 0.15
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
    categories = dict.fromkeys(CATEGORIES, 0.0)
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
