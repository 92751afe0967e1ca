"""Load-time checks of each case against what its backend declares (``harness_backend_info``): the model, the
device, the scenario, every framework-specific value (``supports``) and the scenario's own rules. Run once, when a
suite loads, so a case never fails after training for something known before it started."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from harness.backends.hook_checks import scenarios_of, supports_of
from harness.config import Case
from harness.errors import HarnessError, near
from harness.run.launchers import get_launcher
from harness.run.scenarios import SCENARIOS, get_scenario

__all__ = ["check_case", "check_cases", "runs_scenario", "memory_estimate", "check_memory"]

#: Settings whose values a backend declares under the same key in ``supports``.
_DECLARED = ("optimizer", "precision", "amp_level", "mode", "jit_level")


def _refuse(key: str, value: Any, backend: str, allowed: list[str]) -> HarnessError:
    return HarnessError(f"{key}: backend '{backend}' does not support {value!r} (it supports: "
                        f"{', '.join(allowed) or 'none'}){near(str(value), allowed)}")


def runs_scenario(info: dict[str, Any], name: str) -> bool:
    """A backend runs the built-in scenarios it declares (their hooks were checked when it loaded,
    :func:`harness.backends.loading.required_hooks`), and any scenario another package adds, declared or not, whose
    hooks it has (``info["hooks"]``, as the probe found them, the core's defaults included)."""
    if name in scenarios_of(info) and name in SCENARIOS.builtin:
        return True
    scenario = get_scenario(name)
    return ((name not in SCENARIOS.builtin or not scenario.declared)
            and set(scenario.hooks) <= set(info.get("hooks", ())))


def check_case(case: Case, info: dict[str, Any], info_of: Callable[[str], dict[str, Any]]) -> None:
    """Raise HarnessError (one line, naming the setting) when ``case`` asks its backend for what it lacks."""
    s, b = case.settings, case.backend
    if case.model not in info.get("models", []):
        raise HarnessError(f"model: backend '{b}' does not build '{case.model}'{near(case.model, info['models'])}")
    if case.device not in info.get("devices", []):
        raise HarnessError(f"device: backend '{b}' knows {', '.join(info['devices'])}, not '{case.device}'")
    if not runs_scenario(info, s.scenario):
        raise HarnessError(f"scenario: backend '{b}' does not run scenario '{s.scenario}' (it runs: "
                           f"{', '.join(scenarios_of(info))})")
    supports = supports_of(info)
    for key in _DECLARED:
        if getattr(s, key) not in supports[key]:
            raise _refuse(key, getattr(s, key), b, supports[key])
    for fmt in s.export:
        if fmt not in supports["export"]:
            raise _refuse("export", fmt, b, supports["export"])
    if s.weights and get_scenario(s.scenario).builds_model(info):
        suffix = os.path.splitext(s.weights)[1].lower()
        if suffix != ".npz" and suffix not in supports["weights"]:
            raise HarnessError(f"weights '{s.weights}': backend '{b}' reads {', '.join([*supports['weights'], '.npz'])}"
                               f" files, not '{suffix or 'no suffix'}'")
    if s.devices * s.nodes > 1:
        if not info.get("launcher"):
            raise HarnessError(f"devices: backend '{b}' names no multi-device launcher, so it runs on one device")
        try:
            get_launcher(info["launcher"])
        except HarnessError as exc:
            raise HarnessError(f"devices: backend '{b}' starts several devices with {exc}") from None
    get_scenario(s.scenario).check_backend(case, info, info_of)


#: float32 activation values a ResNet-50 keeps per input pixel for the backward pass at width 1.0 (about 85 MB per
#: 224 px image, 22 GB at batch 256), the basis of the load-time estimate; evaluation keeps about a tenth.
ACTIVATIONS_PER_PIXEL = 420


def memory_estimate(case: Case) -> tuple[int, int]:
    """Rough bytes ``(host input batch, activations)`` of the case's largest batch (the model's weights are small
    beside them at the sizes this refuses)."""
    s = case.settings
    batch = max([s.batch_size, *(s.inference_batch_sizes if s.scenario == "inference" else ())])
    pixels = batch * s.image_size ** 2
    share = 1.0 if s.scenario == "train" else 0.1
    return 4 * 3 * pixels, int(4 * pixels * ACTIVATIONS_PER_PIXEL * s.width * share)


def check_memory(case: Case, total_mib: int | None) -> None:
    """Refuse at load a batch or image size that cannot fit this host's memory (``total_mib``): the input batch on
    any device, and on CPU the activations too. A rough estimate, so only what is far past the host is refused."""
    if not total_mib:
        return
    inputs, activations = memory_estimate(case)
    need = inputs + (activations if case.device == "cpu" else 0)
    if need > total_mib * 2**20:
        s = case.settings
        what = "input batch and activations" if case.device == "cpu" else "the input batch"
        raise HarnessError(f"batch_size {s.batch_size} x image_size {s.image_size}: needs about {need / 2**30:,.0f} "
                           f"GiB of host memory ({what}), this host has {total_mib / 1024:,.0f} GiB: lower "
                           "batch_size or image_size")


def check_cases(cases: Iterable[Case], where: str, info_of: Callable[[str], dict[str, Any]] | None = None) -> None:
    """:func:`check_case` over ``cases``, each backend probed once (in a child process)."""
    if info_of is None:
        from harness.backends.probe import backend_info

        info_of = backend_info
    from harness.measure.host import memory

    mem = memory()[0]
    for case in cases:
        try:
            check_memory(case, mem["total_mib"] if mem else None)
            check_case(case, info_of(case.backend), info_of)
        except HarnessError as exc:
            raise HarnessError(f"{where}: case {case.name}: {exc}") from None
