"""Backend discovery through entry points, and loading one backend per process."""
from __future__ import annotations

import importlib.metadata as md
from typing import Any

import pluggy

from harness.backends import hookspecs
from harness.backends.defaults import PLUGIN_NAME, CoreDefaults
from harness.backends.hook_checks import check_info, export_formats, scenarios_of, supports_of
from harness.errors import HarnessError, near, one_line

__all__ = ["backend_entry_points", "load_backend", "check_contract", "required_hooks", "own_hooks",
           "describe_entry_point"]


def backend_entry_points() -> dict[str, md.EntryPoint]:
    """Installed backends by name, without importing any of them."""
    found: dict[str, md.EntryPoint] = {}
    for ep in md.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else ("?", "?")


def required_hooks(info: dict[str, Any]) -> dict[str, str]:
    """The hooks a backend with ``info`` (its ``harness_backend_info()``) must implement itself, each with what in
    its info calls for it (``""``: every backend), in a stable order.

    This is the one rule of what a backend implements: every backend the hooks of
    :data:`~harness.backends.hookspecs.REQUIRED_HOOKS`; ``harness_probe_device`` when it declares a device other
    than the CPU; ``harness_setup`` when it names a multi-device ``launcher``; each declared built-in scenario's
    :data:`~harness.backends.hookspecs.SCENARIO_HOOKS`; and the hook of each ``supports`` key it sets
    (:data:`~harness.backends.hookspecs.SUPPORTS_HOOKS`). The core answers the rest (:mod:`harness.backends.defaults`).
    A declared scenario of another package is checked when a suite loads (:func:`harness.run.validate.runs_scenario`),
    where its class is known."""
    need = dict.fromkeys(hookspecs.REQUIRED_HOOKS, "")
    devices = [d for d in info.get("devices", ()) if d != "cpu"]
    if devices:
        need["harness_probe_device"] = f"devices: {', '.join(devices)}"
    if info.get("launcher"):
        need["harness_setup"] = f"launcher: {info['launcher']}"
    scenarios = scenarios_of(info)
    for sc in scenarios:
        for hook in hookspecs.SCENARIO_HOOKS.get(sc, ()):
            need.setdefault(hook, f"scenarios: {', '.join(scenarios)}")
    supports = supports_of(info)
    formats = export_formats(info)
    if formats:
        need[hookspecs.SUPPORTS_HOOKS["export"]] = (f"supports.export: {', '.join(supports['export'])}"
                                                    if supports["export"] else
                                                    f"runtimes that load exports: {', '.join(formats)}")
    if supports["profile"]:
        need[hookspecs.SUPPORTS_HOOKS["profile"]] = "supports.profile"
    return need


def own_hooks(pm: pluggy.PluginManager) -> list[str]:
    """The hooks the loaded backend (with any helper plugin it registers) implements, the core's defaults left out."""
    return sorted(name for name, caller in vars(pm.hook).items() if name.startswith("harness_")
                  and any(impl.plugin_name != PLUGIN_NAME for impl in caller.get_hookimpls()))


def check_contract(pm: pluggy.PluginManager, name: str) -> dict[str, Any]:
    """Fail with one line when a backend misses a hook its info calls for (:func:`required_hooks`: the core's
    defaults do not count), a hook has a wrong signature or its info is malformed; return the info."""
    try:
        pm.check_pending()  # a hookimpl whose name matches no spec (a typo)
    except pluggy.PluginValidationError as exc:
        raise HarnessError(f"backend '{name}': {one_line(exc)}") from None
    own = set(own_hooks(pm))
    if "harness_backend_info" not in own:
        raise HarnessError(f"backend '{name}' does not implement required hook harness_backend_info")
    info = check_info(name, pm.hook.harness_backend_info())
    for hook, why in required_hooks(info).items():
        if hook not in own:
            raise HarnessError(f"backend '{name}' declares {why} but does not implement {hook}" if why else
                               f"backend '{name}' does not implement required hook {hook}")
    return info


def load_backend(name: str) -> pluggy.PluginManager:
    """A plugin manager holding the hook specs, exactly the backend ``name`` and the core's answers to the hooks it
    may leave out (:mod:`harness.backends.defaults`).

    Only the entry point named ``name`` is imported, so a case's process loads
    one framework. Raises :class:`HarnessError` for an unknown or broken backend.
    """
    eps = backend_entry_points()
    if name not in eps:
        raise HarnessError(f"unknown backend '{name}'{near(name, eps)} (installed: {', '.join(sorted(eps)) or 'none'})")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(CoreDefaults(pm.hook), name=PLUGIN_NAME)
    try:
        pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP, name=name)
    except pluggy.PluginValidationError as exc:  # an impl takes an argument its spec does not have
        raise HarnessError(f"backend '{name}': {one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - whatever a plugin raises on import is reported in one line
        pkg, _ = _dist_of(eps[name])
        raise HarnessError(f"backend '{name}' (package {pkg}) cannot be imported: "
                           f"{type(exc).__name__}: {one_line(str(exc))}") from None
    check_contract(pm, name)
    return pm


def describe_entry_point(name: str) -> dict[str, str]:
    """Package, version and module of an installed backend (nothing imported)."""
    ep = backend_entry_points()[name]
    pkg, version = _dist_of(ep)
    return {"name": name, "package": pkg, "package_version": version, "module": ep.value}

