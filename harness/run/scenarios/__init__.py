"""Scenarios by name: train, eval, inference, export, data, and any a package registers.

A package adds one with an entry point in the group ``harness.scenarios`` whose object is a
:class:`harness.run.scenarios.base.Scenario` subclass; nothing in the core changes.
"""
from __future__ import annotations

from harness.config import Settings
from harness.errors import HarnessError
from harness.registry import Registry
from harness.run.scenarios.base import Context, Scenario

__all__ = ["Scenario", "Context", "SCENARIOS", "get_scenario", "scenario_names", "check_settings"]

#: Scenarios by name; a package adds one under the entry-point group ``harness.scenarios``.
SCENARIOS: Registry[Scenario] = Registry("scenario", "harness.scenarios", Scenario, {
    "train": "harness.run.scenarios.train:Train", "eval": "harness.run.scenarios.evaluate:Eval",
    "inference": "harness.run.scenarios.inference:Inference", "export": "harness.run.scenarios.export:Export",
    "data": "harness.run.scenarios.data:Data"})
get_scenario = SCENARIOS.get
scenario_names = SCENARIOS.names


def check_settings(s: Settings) -> None:
    """The scenario's rules over a case's settings (after the core's, :func:`harness.config.check_rules`): that it
    exists, that it runs on several devices when asked to, and its own :meth:`Scenario.check`."""
    try:
        scenario = get_scenario(s.scenario)
    except HarnessError as exc:
        raise HarnessError(f"scenario: {exc}") from None
    if s.devices * s.nodes > 1 and not scenario.multi_device:
        raise HarnessError(f"scenario {s.scenario} runs on one device (devices: 1)")
    scenario.check(s)
