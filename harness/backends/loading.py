"""Backend discovery through entry points, and loading one backend per process."""
from __future__ import annotations

import importlib.metadata as md

import pluggy

from harness.backends import hookspecs
from harness.backends.hook_checks import check_info, scenarios_of
from harness.errors import HarnessError, near
from harness.run.scenarios import required_hooks

__all__ = ["backend_entry_points", "load_backend", "check_contract", "describe_entry_point"]


def backend_entry_points() -> dict[str, md.EntryPoint]:
    """Installed backends by name, without importing any of them."""
    found: dict[str, md.EntryPoint] = {}
    for ep in md.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else ("?", "?")


def check_contract(pm: pluggy.PluginManager, name: str) -> dict:
    """Fail with one line when a backend misses a hook its scenarios need, a hook has a wrong signature
    or its info is malformed; return the info."""
    try:
        pm.check_pending()  # a hookimpl whose name matches no spec (a typo)
    except pluggy.PluginValidationError as exc:
        raise HarnessError(f"backend '{name}': {_one_line(exc)}") from None
    if not pm.hook.harness_backend_info.get_hookimpls():
        raise HarnessError(f"backend '{name}' does not implement required hook harness_backend_info")
    info = check_info(name, pm.hook.harness_backend_info())
    scenarios = scenarios_of(info)
    for hook in required_hooks(scenarios):
        if not getattr(pm.hook, hook).get_hookimpls():
            raise HarnessError(f"backend '{name}' does not implement required hook {hook} (needed by its "
                               f"scenarios: {', '.join(scenarios)})")
    if info.get("supports", {}).get("profile") and not pm.hook.harness_profile.get_hookimpls():
        raise HarnessError(f"backend '{name}' declares supports.profile but does not implement harness_profile")
    return info


def load_backend(name: str) -> pluggy.PluginManager:
    """A plugin manager holding the hook specs and exactly the backend ``name``.

    Only the entry point named ``name`` is imported, so a case's process loads
    one framework. Raises :class:`HarnessError` for an unknown or broken backend.
    """
    eps = backend_entry_points()
    if name not in eps:
        raise HarnessError(f"unknown backend '{name}'{near(name, eps)} (installed: {', '.join(sorted(eps)) or 'none'})")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP, name=name)
    except pluggy.PluginValidationError as exc:  # an impl takes an argument its spec does not have
        raise HarnessError(f"backend '{name}': {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - whatever a plugin raises on import is reported in one line
        pkg, _ = _dist_of(eps[name])
        raise HarnessError(f"backend '{name}' (package {pkg}) cannot be imported: "
                           f"{type(exc).__name__}: {_one_line(exc)}") from None
    check_contract(pm, name)
    return pm


def describe_entry_point(name: str) -> dict[str, str]:
    """Package, version and module of an installed backend (nothing imported)."""
    ep = backend_entry_points()[name]
    pkg, version = _dist_of(ep)
    return {"name": name, "package": pkg, "package_version": version, "module": ep.value}

