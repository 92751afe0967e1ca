"""The core's answers to the hooks a backend may leave out (:data:`harness.backends.hookspecs.DEFAULTED_HOOKS`).

:func:`harness.backends.loading.load_backend` registers one :class:`CoreDefaults` beside the backend, every hook
``trylast``: pluggy asks the backend first, and the core answers only when the backend has no implementation or
returns None. For ``harness_environment``, which collects, the core's dict is merged first and the backend's over
it. Whether a backend implements what its info calls for is checked on its own hooks, never these
(:func:`harness.backends.loading.required_hooks`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.backends.arrays import read_npz, write_npz
from harness.backends.hookspecs import hookimpl
from harness.config import Case
from harness.dist import place
from harness.errors import DeviceUnavailable, HarnessError
from harness.measure.environment import cpu_model
from harness.models.specs import get_model

__all__ = ["PLUGIN_NAME", "CoreDefaults", "host_float"]

#: The name the defaults are registered under in a backend's plugin manager.
PLUGIN_NAME = "harness-core-defaults"


def host_float(value: Any) -> float:
    """One value as a Python float, through NumPy: a host scalar, a one-element array, or a tensor NumPy reads."""
    if isinstance(value, (int, float, np.generic)):
        return float(value)
    a = np.asarray(value)
    if a.size != 1 or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise HarnessError(f"harness_to_host: the core reads one number per value, got {type(value).__name__} of "
                           f"shape {a.shape} and dtype {a.dtype} (implement harness_to_host for this value type)")
    return float(a.reshape(()))


class CoreDefaults:
    """The core's implementations, bound to the backend's hook relay ``hook`` (they ask the backend's own
    ``harness_backend_info``, ``harness_probe_device`` and ``harness_to_device``)."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    @hookimpl(trylast=True)
    def harness_probe_device(self, device: str) -> dict[str, Any]:
        """The host CPU, when the backend declares ``cpu``; any other device is unavailable."""
        info = self.hook.harness_backend_info()
        if device == "cpu" and "cpu" in info.get("devices", ()):
            return {"available": True, "reason": None, "model": cpu_model(), "count": 1}
        return {"available": False, "reason": f"no {device}: backend '{info.get('name')}' runs on "
                f"{', '.join(info.get('devices', ())) or 'no device'}", "model": None, "count": 0}

    @hookimpl(trylast=True)
    def harness_setup(self, case: Case) -> str:
        """The neutral device name, once ``harness_probe_device`` says the device is here."""
        status = self.hook.harness_probe_device(device=case.device) or {}
        if not status.get("available"):
            raise DeviceUnavailable(status.get("reason") or f"{case.device}: not available")
        return case.device

    @hookimpl(trylast=True)
    def harness_data(self, case: Case, split: str, device: Any) -> Any:
        """The core's host batches of the case's data, moved with the backend's ``harness_to_device``."""
        from harness.data.host_batches import HostStream, device_stream  # image decoding: only when data is asked

        spec, here = get_model(case.model), place()
        host = HostStream(case.settings, split, repeats=spec.repeats, mean=spec.mean, std=spec.std, rank=here.rank,
                          world=here.world)
        return device_stream(host, lambda arrays: self.hook.harness_to_device(arrays=arrays, device=device))

    @hookimpl(trylast=True)
    def harness_to_host(self, value: Any) -> Any:
        """A float per value, through NumPy (:func:`host_float`); a list for a list or tuple."""
        if isinstance(value, (list, tuple)):
            return [host_float(v) for v in value]
        return host_float(value)

    @hookimpl(trylast=True)
    def harness_environment(self, case: Case, device: Any) -> dict[str, Any]:
        """What the backend's info and its probe of the case's device already say."""
        info = self.hook.harness_backend_info()
        status = self.hook.harness_probe_device(device=case.device) or {}
        return {"framework": info.get("framework"), "framework_version": info.get("framework_version"),
                "backend_version": info.get("version"), "device_model": status.get("model"),
                "device_count": status.get("count")}

    @hookimpl(trylast=True)
    def harness_read_checkpoint(self, path: str) -> dict[str, Any]:
        """A neutral ``.npz`` of named arrays."""
        return read_npz(path)

    @hookimpl(trylast=True)
    def harness_write_checkpoint(self, weights: dict[str, Any], path: str) -> str:
        """A neutral ``.npz`` of named arrays."""
        return write_npz(path, weights)
