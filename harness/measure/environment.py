"""Host facts for result records, gathered without any deep-learning framework."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from harness import __version__

__all__ = ["host_environment", "cpu_model", "cpuinfo_text", "cpu_flags", "cpu_bf16", "bf16_refusal"]

#: CPU flags (``/proc/cpuinfo``) that execute bfloat16 arithmetic natively, best first: AMX tiles, AVX-512 BF16.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpuinfo_text() -> str:
    """``/proc/cpuinfo`` (empty where it cannot be read), read once per process."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpuinfo_field(*keys: str) -> str | None:
    """The first ``key: value`` line of :func:`cpuinfo_text` whose key starts with one of ``keys``."""
    return next((line.split(":", 1)[1].strip() for line in cpuinfo_text().splitlines() if line.startswith(keys)),
                None)


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or ``platform.processor()``."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    return frozenset((_cpuinfo_field("flags", "Features") or "").split())


def cpu_bf16() -> str | None:
    """The CPU's native bfloat16 instructions (``amx_bf16`` or ``avx512_bf16``), None where it has none."""
    return next((f for f in BF16_FLAGS if f in cpu_flags()), None)


def bf16_refusal() -> str | None:
    """Why bf16 training is refused on this CPU (one line), or None where the CPU runs bf16 natively: without AMX or
    AVX-512 BF16 every bf16 op is emulated, slower than fp32, and a comparison in it measures the emulation."""
    if cpu_bf16():
        return None
    isa = "AVX-512" if "avx512f" in cpu_flags() else "AVX2" if "avx2" in cpu_flags() else "no AVX2"
    return (f"cpu: bf16 needs AMX or AVX-512 BF16, which this CPU ({cpu_model()}, {isa}) lacks: bf16 would be "
            f"emulated, slower than fp32")


@functools.cache
def git_commit() -> str | None:
    """The commit of the harness source tree, with ``+dirty`` when it has local changes."""
    src = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, check=False, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def host_environment() -> dict[str, Any]:
    """Host, OS, CPU, Python, harness version and git commit."""
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_bf16(),  # the native bf16 instructions (amx_bf16, avx512_bf16), None without
        "python": platform.python_version(),
        "harness_version": __version__,
        "git_commit": git_commit(),
    }
