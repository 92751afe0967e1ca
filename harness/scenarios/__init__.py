"""Scenarios by name: train, eval, inference, export, data, and any a package registers.

A package adds one with an entry point in the group ``harness.scenarios`` whose object is a
:class:`harness.scenarios.base.Scenario` subclass; nothing in the core changes.
"""
from __future__ import annotations

from ..registry import Registry
from .base import Context, Scenario

__all__ = ["Scenario", "Context", "SCENARIOS", "get_scenario", "scenario_names", "required_hooks"]

#: Scenarios by name; a package adds one under the entry-point group ``harness.scenarios``.
SCENARIOS: Registry[Scenario] = Registry("scenario", "harness.scenarios", Scenario, {
    "train": "harness.scenarios.train:Train", "eval": "harness.scenarios.evaluate:Eval",
    "inference": "harness.scenarios.inference:Inference", "export": "harness.scenarios.export:Export",
    "data": "harness.scenarios.data:Data"})
get_scenario = SCENARIOS.get
scenario_names = SCENARIOS.names


def required_hooks(scenarios: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The hooks a backend declaring ``scenarios`` must implement, in a stable order."""
    from ..hookspecs import REQUIRED_HOOKS

    names = list(REQUIRED_HOOKS)
    for sc in scenarios:
        names += [h for h in get_scenario(sc).hooks if h not in names]
    return tuple(names)
