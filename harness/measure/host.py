"""Readers of the host state a timing depends on: other processes' CPU use, load, CPU clocks, memory, thread
settings, NVIDIA (``pynvml``, when installed) and Ascend (``npu-smi``, when on PATH) accelerator state.

Each reader returns ``(value, None)``, or ``(None, reason)`` when its source is absent; none raises. Those
reading ``/proc`` or ``/sys`` take ``root`` (default ``/``), so a test can point them at a fake tree.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["cpu_times", "load_average", "busy_processes", "HostWindow", "cpu_frequency", "memory",
           "thread_settings", "nvidia", "ascend", "parse_npu_smi", "THREAD_VARS", "THROTTLE_REASONS"]

HZ = os.sysconf("SC_CLK_TCK")  # the unit of /proc/stat and /proc/<pid>/stat times
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ONEDNN_MAX_CPU_ISA",
               "CUDA_VISIBLE_DEVICES")
# nvml.h's clock throttle ("clocks event" since CUDA 12) reason bits; pynvml's own constants win where present.
THROTTLE_REASONS = {"GpuIdle": 0x1, "ApplicationsClocksSetting": 0x2, "SwPowerCap": 0x4, "HwSlowdown": 0x8,
                    "SyncBoost": 0x10, "SwThermalSlowdown": 0x20, "HwThermalSlowdown": 0x40,
                    "HwPowerBrakeSlowdown": 0x80, "DisplayClockSetting": 0x100, "BoardLimit": 0x200,
                    "Reliability": 0x400}
#: Where ``/proc`` and ``/sys`` are found: a folder, or None for ``/``.
Root = str | Path | None


def _read(root: Root, rel: str) -> str | None:
    try:
        return Path(root or "/", rel).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def cpu_times(root: Root = None) -> tuple[dict[str, float] | None, str | None]:
    """Whole-host CPU seconds since boot (``/proc/stat``); ``busy``: user+nice+system+irq+softirq, not steal."""
    text = _read(root, "proc/stat")
    if not text or not text.startswith("cpu "):
        return None, "no /proc/stat"
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    times = dict.fromkeys(names, 0.0) | dict(zip(names, (int(v) / HZ for v in text.split("\n")[0].split()[1:])))
    times["busy"] = sum(times[k] for k in ("user", "nice", "system", "irq", "softirq"))
    return times, None


def load_average(root: Root = None) -> tuple[tuple[float, ...] | None, str | None]:
    """The 1, 5 and 15-minute load averages from ``/proc/loadavg``."""
    text = _read(root, "proc/loadavg")
    return (tuple(float(v) for v in text.split()[:3]), None) if text else (None, "no /proc/loadavg")


def _proc_stats(root: Root = None) -> dict[int, dict[str, Any]]:
    """Each process's ppid, name, CPU ticks (utime+stime, all its threads) and its waited-for children's."""
    procs = {}
    for entry in Path(root or "/", "proc").glob("[0-9]*"):
        text = _read(entry, "stat") or ""  # empty when the process is gone since the listing
        try:
            f = text[text.rindex(")") + 2:].split()
            procs[int(entry.name)] = {"ppid": int(f[1]), "name": text[text.index("(") + 1:text.rindex(")")],
                                      "ticks": int(f[11]) + int(f[12]), "child_ticks": int(f[13]) + int(f[14])}
        except (ValueError, IndexError):
            continue
    return procs


def _own_cpu_s(root: Root = None) -> float:
    """CPU seconds of this process, its reaped descendants (getrusage) and its live ones (``/proc``)."""
    procs, todo = _proc_stats(root), [os.getpid()]
    found: set[int] = set()
    while todo:
        parent = todo.pop()
        kids = {p for p, v in procs.items() if v["ppid"] == parent} - found
        found |= kids
        todo += kids
    live: int = sum(procs[p]["ticks"] + procs[p]["child_ticks"] for p in found)
    me, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + reaped.ru_utime + reaped.ru_stime + live / HZ


def busy_processes(interval: float = 0.5, min_share: float = 0.2, exclude_pids: Iterable[int] | None = None,
                   root: Root = None) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Processes that used more than ``min_share`` of one core over ``interval`` seconds, busiest first (a
    multi-threaded one can pass 1.0). ``exclude_pids`` defaults to this process alone: its children count."""
    exclude = {os.getpid()} if exclude_pids is None else set(exclude_pids)
    before, t0 = _proc_stats(root), time.monotonic()
    if not before:
        return None, "no /proc"
    time.sleep(interval)
    after, elapsed = _proc_stats(root), time.monotonic() - t0
    busy = []
    for pid, now in after.items():
        share = (now["ticks"] - before.get(pid, {"ticks": 0})["ticks"]) / HZ / elapsed  # new ones: all theirs
        if pid not in exclude and share > min_share:
            cmd = (_read(root, f"proc/{pid}/cmdline") or "").replace("\0", " ").strip()
            name = (_read(root, f"proc/{pid}/comm") or now["name"]).strip()
            busy.append({"pid": pid, "name": name, "cmdline": cmd[:80], "share": round(share, 2)})
    return sorted(busy, key=lambda p: -p["share"]), None


class HostWindow:
    """CPU time the whole host, this process tree and everything else used between :meth:`start` and
    :meth:`stop`: ``probe = HostWindow.start(); ...case runs...; facts = probe.stop()``.

    Own time: getrusage(SELF + CHILDREN), plus live descendants found through ``/proc`` ppid links. Counted as
    other, not own: a descendant orphaned (re-parented to init) unseen, or exited and never waited for.
    ``/proc/stat`` counts 1/HZ-s ticks per CPU: judge ``other_cores_busy`` over seconds, not milliseconds."""

    def __init__(self, root: Root = None) -> None:
        self.root, self.t0, (self.cpu0, self.why) = root, time.monotonic(), cpu_times(root)
        self.own0, self.load0 = _own_cpu_s(root), (load_average(root)[0] or [None])[0]

    @classmethod
    def start(cls, root: Root = None) -> HostWindow:
        return cls(root)

    def stop(self) -> dict[str, Any]:
        """wall_s, host_busy_cpu_s, own_cpu_s, other_cpu_s, other_cores_busy (other_cpu_s / wall_s), steal_s,
        load_avg_1m ([start, end]), cpu_count; the host-wide ones None, ``unavailable`` why, without /proc/stat."""
        wall, (cpu1, why) = time.monotonic() - self.t0, cpu_times(self.root)
        own = _own_cpu_s(self.root) - self.own0
        facts = {"wall_s": round(wall, 3), "host_busy_cpu_s": None, "own_cpu_s": round(own, 3),
                 "other_cpu_s": None, "other_cores_busy": None, "steal_s": None,
                 "load_avg_1m": [self.load0, (load_average(self.root)[0] or [None])[0]],
                 "cpu_count": os.cpu_count()}
        if not (self.cpu0 and cpu1):
            return facts | {"unavailable": self.why or why}
        busy = cpu1["busy"] - self.cpu0["busy"]
        other = max(0.0, busy - own)
        return facts | {"host_busy_cpu_s": round(busy, 3), "other_cpu_s": round(other, 3),
                        "other_cores_busy": round(other / wall, 3) if wall > 0 else None,
                        "steal_s": round(cpu1["steal"] - self.cpu0["steal"], 3)}


def cpu_frequency(root: Root = None) -> tuple[dict[str, Any] | None, str | None]:
    """The CPUs' cpufreq governors, current MHz range, min and max MHz, and whether boost/turbo is on."""
    base = Path(root or "/", "sys/devices/system/cpu")
    cpus = sorted(base.glob("cpu[0-9]*/cpufreq"))

    def mhz(name: str) -> list[float]:
        return [int(v) / 1000 for v in (_read(d, name) for d in cpus) if v and v.strip().isdigit()]

    boost, no_turbo = _read(base, "cpufreq/boost"), _read(base, "intel_pstate/no_turbo")
    boost_on = (boost.strip() == "1") if boost else (no_turbo.strip() == "0") if no_turbo else None
    governors = sorted({g.strip() for g in (_read(d, "scaling_governor") for d in cpus) if g})
    if not governors and boost_on is None:
        return None, "no cpufreq in /sys (usual in a VM: the hypervisor owns the clocks)"
    cur, lo, hi = mhz("scaling_cur_freq"), mhz("scaling_min_freq"), mhz("scaling_max_freq")
    return {"governors": governors, "cur_mhz": [min(cur), max(cur)] if cur else None,
            "min_mhz": min(lo) if lo else None, "max_mhz": max(hi) if hi else None, "boost": boost_on}, None


def memory(root: Root = None) -> tuple[dict[str, int] | None, str | None]:
    """MemTotal, MemAvailable, SwapTotal and swap in use (SwapTotal - SwapFree), in MiB, from /proc/meminfo."""
    fields = (line.split(":", 1) for line in (_read(root, "proc/meminfo") or "").splitlines() if ":" in line)
    kb = {key: int(value.split()[0]) for key, value in fields if value.split() and value.split()[0].isdigit()}
    if "MemTotal" not in kb or "MemAvailable" not in kb:
        return None, "no MemAvailable in /proc/meminfo"
    swap_total, swap_free = kb.get("SwapTotal", 0), kb.get("SwapFree", 0)
    return {"total_mib": kb["MemTotal"] // 1024, "available_mib": kb["MemAvailable"] // 1024,
            "swap_total_mib": swap_total // 1024, "swap_used_mib": (swap_total - swap_free) // 1024}, None


def thread_settings() -> tuple[dict[str, Any], None]:
    """Thread-count environment variables, and the CPUs this process may run on against the host's count."""
    return {"env": {v: os.environ.get(v) for v in THREAD_VARS}, "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}, None


def _try(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and the like: a missing field, not a failure
        return None


def nvidia() -> tuple[list[dict[str, Any]] | None, str | None]:
    """Per GPU through NVML: clocks against their maxima, persistence, power limits (W), throttle reasons."""
    try:
        import pynvml
    except ImportError:
        return None, "pynvml (nvidia-ml-py) not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVML's own error classes: a finding of the probe, not a crash
        return None, f"NVML not available: {exc}"
    reason_getters = [getattr(pynvml, f"nvmlDeviceGetCurrentClocks{kind}Reasons") for kind in ("Event", "Throttle")
                      if hasattr(pynvml, f"nvmlDeviceGetCurrentClocks{kind}Reasons")]  # new name, then old
    bits = {n: getattr(pynvml, f"nvmlClocksThrottleReason{n}", bit) for n, bit in THROTTLE_REASONS.items()}
    gpus = []
    try:
        watts = {"power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit,
                 "power_default_w": pynvml.nvmlDeviceGetPowerManagementDefaultLimit}
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = _try(pynvml.nvmlDeviceGetName, h)
            mask = next((m for m in (_try(get, h) for get in reason_getters) if m is not None), None)
            persist = _try(pynvml.nvmlDeviceGetPersistenceMode, h)
            gpu = {"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                   "persistence": None if persist is None else persist == pynvml.NVML_FEATURE_ENABLED,
                   "throttle": None if mask is None else [n for n, b in bits.items() if mask & b],
                   "temperature_c": _try(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)}
            for key, clock in (("sm", pynvml.NVML_CLOCK_SM), ("mem", pynvml.NVML_CLOCK_MEM)):
                gpu[f"{key}_mhz"] = _try(pynvml.nvmlDeviceGetClockInfo, h, clock)
                gpu[f"{key}_max_mhz"] = _try(pynvml.nvmlDeviceGetMaxClockInfo, h, clock)
            limits = _try(pynvml.nvmlDeviceGetPowerManagementLimitConstraints, h) or (None, None)
            for key, mw in [(k, _try(fn, h)) for k, fn in watts.items()] + [("power_max_w", limits[1])]:
                gpu[key] = None if mw is None else round(mw / 1000, 1)
            gpus.append(gpu)
    except Exception as exc:  # noqa: BLE001 - as above
        return None, f"NVML query failed: {exc}"
    finally:
        _try(pynvml.nvmlShutdown)
    return gpus, None


def parse_npu_smi(text: str) -> list[dict[str, Any]]:
    """Per NPU from ``npu-smi info``'s table, loosely: name, health, power (W), temperature (C), AICore %, and
    how many processes it lists on that NPU. Rows it does not recognise are skipped."""
    npus: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    in_procs = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        in_procs = in_procs or "Process id" in line
        if len(cells) < 3:
            continue
        head, mid = cells[0].split(), cells[1]
        rest = [float(v) if v.replace(".", "", 1).isdigit() else None for v in cells[2].split()] + [None, None]
        if in_procs and head and head[0].isdigit() and mid.isdigit():
            for npu in npus:
                npu["processes"] += npu["npu"] == int(head[0])
        elif not in_procs and len(head) >= 2 and head[0].isdigit() and mid.isalpha():
            last = {"npu": int(head[0]), "name": head[1], "health": mid, "power_w": rest[0],
                    "temperature_c": rest[1], "aicore_pct": None, "processes": 0}
            npus.append(last)
        elif not in_procs and last and ":" in mid and last["aicore_pct"] is None:  # chip row: bus id, AICore %
            last["aicore_pct"] = rest[0]
    return npus


def ascend() -> tuple[list[dict[str, Any]] | None, str | None]:
    """:func:`parse_npu_smi` of ``npu-smi info``, when it is on PATH."""
    if shutil.which("npu-smi") is None:
        return None, "npu-smi not on PATH (no Ascend driver)"
    try:
        out = subprocess.run(["npu-smi", "info"], capture_output=True, check=False, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"npu-smi info failed: {exc}"
    npus = parse_npu_smi(out)
    return (npus, None) if npus else (None, "npu-smi info printed no NPU table")
