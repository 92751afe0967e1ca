"""Running core modules in child processes (one framework per process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

__all__ = ["child_env", "run_json"]

_SRC = str(Path(__file__).resolve().parents[2])


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with this harness importable first (installed or not)."""
    path = os.pathsep.join([_SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, PYTHONPATH=path, **extra)


def run_json(module: str, args: list[str], *, what: str, cwd: str | None = None,
             timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m module args`` and return the JSON object on its last stdout line.

    The child reports user errors as ``{"error": "..."}``, raised here as
    :class:`HarnessError`; a crash raises with the last line of its output.
    """
    try:
        out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, check=False, text=True,
                             cwd=cwd, env=child_env(), timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what}: timed out after {timeout:g} s") from None
    lines = out.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1]
        raise HarnessError(f"{what}: failed (exit {out.returncode}): {tail[:400]}") from None
    if isinstance(result, dict) and result.get("error"):
        raise HarnessError(f"{what}: {result['error']}")
    return result


def report_errors(fn: Any) -> None:
    """Child side: run ``fn()``; print its JSON result, or ``{"error": ...}`` for a HarnessError."""
    try:
        result = fn()
    except HarnessError as exc:
        result = {"error": str(exc)}
    print(json.dumps(result), flush=True)
