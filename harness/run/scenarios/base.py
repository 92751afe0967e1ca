"""What a scenario is: a name, the hooks it needs, its load-time checks, any case that must run first, and
``run(ctx)`` filling the case's result. Scenarios own their loops through :class:`harness.run.loop.TimedLoop`."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

from harness.backends.hookspecs import MODEL_HOOKS
from harness.config import Case, Settings
from harness.dist import Place
from harness.measure.energy import EnergyMeter
from harness.run.loop import TimedLoop

__all__ = ["Scenario", "Context"]


@dataclasses.dataclass
class Context:
    """What a scenario's ``run`` works with, in the case's process."""

    case: Case
    hook: Any  # the backend's pluggy hook relay
    info: dict[str, Any]  # harness_backend_info()
    device: Any
    model: Any  # None when the scenario builds no model on this backend
    place: Place
    result: dict[str, Any]  # {"status", "reason", "metrics", "samples", "env"}: the scenario adds metrics/samples
    progress: Callable[..., None]
    result_path: str
    init_s: float = 0.0  # seconds from the process's start to the model being ready
    phase: str = "setup"
    #: ``(train step, batch iterator)`` of the training just done, for work after it (``profile: true``).
    trained: Any = None

    @property
    def settings(self) -> Settings:
        return self.case.settings

    @property
    def metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = self.result["metrics"]
        return metrics

    @property
    def samples(self) -> dict[str, Any]:
        samples: dict[str, Any] = self.result["samples"]
        return samples

    def loop(self, energy: bool = False) -> TimedLoop:
        """The timed loop on this case's device: device events where the backend offers them (asynchronous
        devices), the host clock otherwise; the record says which (``metrics.timing``). With ``energy``, the loop
        meters the device's energy over its timed region (:mod:`harness.measure.energy`, ``loop.energy_window``)."""
        events = self.hook.harness_events(device=self.device) if self.hook.harness_events.get_hookimpls() else None
        meter = EnergyMeter.for_device(self.case.device, self.place.local_device) if energy else None
        loop = TimedLoop(lambda: self.hook.harness_synchronize(device=self.device), self.progress, events=events,
                         energy=meter)
        self.metrics["timing"] = loop.timing
        return loop

    def save(self) -> None:
        """Write the result as it stands (after each phase, so a later failure keeps what was measured)."""
        tmp = f"{self.result_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.result, f)
        os.replace(tmp, self.result_path)


class Scenario:
    """A kind of measurement. Subclasses set ``name`` and override what they need; register them in
    :mod:`harness.run.scenarios` (or, from another package, under the entry-point group ``harness.scenarios``)."""

    #: The value of ``settings.scenario`` that selects it.
    name: ClassVar[str] = ""
    #: One line for ``harness list``.
    help: ClassVar[str] = ""
    #: The backend hooks it needs beyond :data:`harness.backends.hookspecs.REQUIRED_HOOKS` (the built-in scenarios
    #: name :data:`harness.backends.hookspecs.SCENARIO_HOOKS`, which decides what a backend declaring them implements;
    #: a scenario of another package runs on a backend whose hooks, the core's defaults included, cover these).
    hooks: ClassVar[tuple[str, ...]] = MODEL_HOOKS
    #: Whether it may run on several devices (a launcher's ranks).
    multi_device: ClassVar[bool] = False
    #: Whether a backend runs it only when its info lists it among its ``scenarios`` (False: implementing
    #: :attr:`hooks` is enough, as for a scenario another package adds).
    declared: ClassVar[bool] = True

    def check(self, settings: Settings) -> None:
        """Rules between settings this scenario has, checked when a suite loads (raise HarnessError; see
        :func:`harness.run.scenarios.check_settings`)."""

    def check_backend(self, case: Case, info: dict[str, Any], info_of: Callable[[str], dict[str, Any]]) -> None:
        """Rules between the case and what its backend declares, checked when the suite loads (``info_of(name)``
        gives another backend's info)."""

    def builds_model(self, info: dict[str, Any]) -> bool:
        """Whether the case's process builds the model on this backend."""
        return True

    def prerequisite(self, case: Case, info: dict[str, Any]) -> Case | None:
        """A case that must run first, in its own process, or None."""
        return None

    def after_prerequisite(self, case: Case, made: dict[str, Any], folder: str) -> tuple[Case, dict[str, Any]]:
        """The case as it runs once ``made`` (the prerequisite's result, run in ``folder``) is there, and what
        to merge into its metrics afterwards."""
        return case, {}

    def merge(self, result: dict[str, Any], extra: dict[str, Any]) -> None:
        """Fold what :meth:`after_prerequisite` returned into the case's result."""
        result.setdefault("metrics", {}).update(extra)

    def run(self, ctx: Context) -> None:
        raise NotImplementedError
