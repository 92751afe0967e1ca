"""Launchers by name: ``single``, ``torchrun``, ``msrun``, and any a package registers.

A backend names its multi-device launcher in ``harness_backend_info()["launcher"]``; a one-device case always runs
through ``single``. A package adds a launcher with an entry point in the group ``harness.launchers`` whose object
is a :class:`harness.launchers.base.Launcher` subclass.
"""
from __future__ import annotations

from ..config import Case
from ..errors import HarnessError
from ..registry import Registry
from .base import Launcher

__all__ = ["Launcher", "LAUNCHERS", "get_launcher", "launcher_for"]

#: Launchers by name; a package adds one under the entry-point group ``harness.launchers``.
LAUNCHERS: Registry[Launcher] = Registry("launcher", "harness.launchers", Launcher, {
    "single": "harness.launchers.single:Single", "torchrun": "harness.launchers.torchrun:Torchrun",
    "msrun": "harness.launchers.msrun:Msrun"})
get_launcher = LAUNCHERS.get


def launcher_for(case: Case, info: dict) -> Launcher:
    """``single`` for one device on one node, else the backend's own launcher."""
    if case.settings.devices * case.settings.nodes == 1:
        return get_launcher("single")
    name = info.get("launcher")
    if not name:
        raise HarnessError(f"backend '{case.backend}' has no multi-device launcher")
    return get_launcher(name)
