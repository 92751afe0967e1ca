"""Ask one backend, in its own process, what it supports and which devices work here.

``python -m harness.backends.probe NAME`` prints one JSON object; :func:`probe_backend`
runs it as a child so the caller never imports a deep-learning framework.
"""
from __future__ import annotations

import sys
import tempfile
from typing import Any

from harness.backends.child import report_errors, run_json
from harness.backends.loading import load_backend
from harness.config import DEVICES
from harness.errors import HarnessError

__all__ = ["probe_backend", "backend_info"]

_CACHE: dict[str, dict[str, Any]] = {}


def _probe_here(name: str) -> dict[str, Any]:
    pm = load_backend(name)
    hook = pm.hook
    info = dict(hook.harness_backend_info())
    # every hook that answers, the core's defaults included (what a scenario of another package may call)
    info["hooks"] = sorted(h for h in dir(hook) if h.startswith("harness_") and getattr(hook, h).get_hookimpls())
    info["device_status"] = {d: hook.harness_probe_device(device=d) for d in DEVICES}
    return info


def probe_backend(name: str, timeout: float = 120.0) -> dict[str, Any]:
    """Backend info plus ``device_status`` per neutral device; ``{"error": ...}`` when it cannot load."""
    with tempfile.TemporaryDirectory(prefix="harness-probe-") as tmp:  # frameworks may write into the cwd
        try:
            return run_json("harness.backends.probe", [name], what=f"backend '{name}'", cwd=tmp, timeout=timeout)
        except HarnessError as exc:
            return {"name": name, "error": str(exc).removeprefix(f"backend '{name}': ")}


def backend_info(name: str) -> dict[str, Any]:
    """A backend's info and device status, probed once per process (in a child); HarnessError when it cannot
    load."""
    if name not in _CACHE:
        info = probe_backend(name)
        if "error" in info:
            raise HarnessError(f"backend '{name}': {info['error']}")
        _CACHE[name] = info
    return _CACHE[name]


if __name__ == "__main__":
    report_errors(lambda: _probe_here(sys.argv[1]))
