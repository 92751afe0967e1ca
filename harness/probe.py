"""Ask one backend, in its own process, what it supports and which devices work here.

``python -m harness.probe NAME`` prints one JSON object; :func:`probe_backend`
runs it as a child so the caller never imports a deep-learning framework.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import DEVICES
from .errors import HarnessError
from .plugins import load_backend

__all__ = ["probe_backend"]


def _probe_here(name: str) -> dict[str, Any]:
    hook = load_backend(name).hook
    info = dict(hook.harness_backend_info())
    info["device_status"] = {d: hook.harness_probe_device(device=d) for d in DEVICES}
    return info


def probe_backend(name: str, timeout: float = 120.0) -> dict[str, Any]:
    """Backend info plus ``device_status`` per neutral device; ``{"error": ...}`` when it cannot load."""
    src = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]))
    try:
        out = subprocess.run([sys.executable, "-m", "harness.probe", name], capture_output=True, text=True,
                             timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"probe timed out after {timeout:g} s"}
    lines = out.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"name": name, "error": f"probe failed (exit {out.returncode}): {tail}"}


def main() -> int:
    name = sys.argv[1]
    try:
        print(json.dumps(_probe_here(name)))
    except HarnessError as exc:
        print(json.dumps({"name": name, "error": str(exc)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
