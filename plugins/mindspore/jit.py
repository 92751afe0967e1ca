"""The graph compile level (``jit_level``) of the MindSpore backend's compiled cells.

MindSpore 2.10 compiles a GRAPH-mode cell at one of two levels (``mindspore.JitConfig``; ``O2``, the Ascend
GraphEngine, is deprecated since 2.9): ``O0`` keeps only the passes correctness needs and runs kernel by kernel;
``O1`` adds the common passes and automatic operator fusion. The case's ``jit_level`` picks one; ``auto`` takes
:data:`DEFAULT_LEVELS` for the device, measured where we could (``docs/benchmarks.md``, "MindSpore's compile level").
The level is set on every cell the backend calls at top level (the training cell, the eval cell, the inference
network), since a cell's own ``JitConfig`` is what its compilation reads, and it is recorded in every result
(``environment.mindspore_jit_level``). PYNATIVE mode compiles no graph: the level is ``None`` there.
"""
from __future__ import annotations

from typing import Any

import mindspore as ms
from mindspore import nn

from harness.config import Case

__all__ = ["DEFAULT_LEVELS", "jit_level", "set_level"]

#: ``jit_level: auto`` per MindSpore target. CPU: O0; for ResNet-50 training on a 2-core AMD EPYC, MindSpore's own
#: (unset) choice took 1.095x [1.008, 1.189] O0's step time and O1 1.009x [0.897, 1.135] (docs/benchmarks.md,
#: benchmarks/fairness/mindspore_options.py). GPU and Ascend: O0, the level MindSpore's docs name for kernel-by-kernel
#: execution now that O2 (the GraphEngine sink) is deprecated; not measured here (no such device).
DEFAULT_LEVELS = {"CPU": "O0", "GPU": "O0", "Ascend": "O0"}


def jit_level(case: Case, target: str) -> str | None:
    """The compile level the case's graphs use on ``target``; ``None`` in PYNATIVE mode (no graph)."""
    s = case.settings
    if s.mode == "pynative":
        return None
    return DEFAULT_LEVELS[target] if s.jit_level == "auto" else s.jit_level


def set_level(cell: nn.Cell, device: Any) -> nn.Cell:
    """Give ``cell`` (called at top level) the device's compile level; returns it. A cell takes one JitConfig:
    a cell already given one keeps it."""
    level = (device or {}).get("jit_level")  # (None: a cell built outside a case's setup keeps MindSpore's own)
    if level is not None and not cell.jit_config_dict:
        cell.set_jit_config(ms.JitConfig(jit_level=level))
    return cell
