"""Launchers by name: ``single``, ``torchrun``, ``msrun``, and any a package registers.

A backend names its multi-device launcher in ``harness_backend_info()["launcher"]``; a one-device case always runs
through ``single``. A package adds a launcher with an entry point in the group ``harness.launchers`` whose object
is a :class:`harness.run.launchers.base.Launcher` subclass.
"""
from __future__ import annotations

from typing import Any

from harness.config import Case
from harness.errors import HarnessError
from harness.registry import Registry
from harness.run.launchers.base import Launcher

__all__ = ["Launcher", "LAUNCHERS", "get_launcher", "launcher_for"]

#: Launchers by name; a package adds one under the entry-point group ``harness.launchers``.
LAUNCHERS: Registry[Launcher] = Registry("launcher", "harness.launchers", Launcher, {
    "single": "harness.run.launchers.single:Single", "torchrun": "harness.run.launchers.torchrun:Torchrun",
    "msrun": "harness.run.launchers.msrun:Msrun"})
get_launcher = LAUNCHERS.get


def launcher_for(case: Case, info: dict[str, Any]) -> Launcher:
    """``single`` for one device on one node, else the backend's own launcher."""
    if case.settings.devices * case.settings.nodes == 1:
        return get_launcher("single")
    name = info.get("launcher")
    if not name:
        raise HarnessError(f"backend '{case.backend}' has no multi-device launcher")
    return get_launcher(name)
