"""``harness doctor``: is this host fit to time a benchmark on, and what to fix when it is not.

:func:`run_doctor` samples the host for ``interval`` seconds (:func:`gather`) and judges it (:func:`assess`)
against the thresholds below; :func:`exit_status` is 1 when any finding fails. :func:`quick_checks` is the
cheap, sleep-free subset every result record carries in ``env["host_checks"]``. See ``docs/doctor.md``.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any

from tabulate import tabulate

from harness.measure import host as hostcheck
from harness.measure import noise

__all__ = ["Finding", "run_doctor", "gather", "assess", "exit_status", "render", "quick_checks"]

# Other processes' cores and the hypervisor's steal are judged against the limits that flag a case unstable,
# harness.measure.noise.OTHER_CORES_MAX and STEAL_MAX (both fail here): a host the doctor passes does not make
# every run's record unstable.
BUSY_SHARE = 0.2  # fail: another process used more than this share of one core during the sample
LOAD_PER_CORE = 0.5  # fail: the 1-minute load average is above this many runnable tasks per core
MIN_MEM_AVAILABLE_MIB = 2048  # fail: less memory available than this
MAX_SWAP_USED_MIB = 0  # warn: more swap in use than this
CORE_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # warn when unset
GPU_THROTTLE_OK = ("GpuIdle",)  # throttle reasons that are no fault: an idle GPU clocks down
NPU_BUSY_AICORE_PCT = 5  # fail: an NPU's AICore busier than this while the harness runs nothing


@dataclasses.dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn" or "fail"
    check: str
    detail: str
    fix: str | None = None


def gather(interval: float = 1.0, root: hostcheck.Root = None) -> dict[str, Any]:
    """Every reader's value (None where its source is absent, with the reason under ``missing``), the busy
    processes and host-wide CPU use of other processes over ``interval`` seconds."""
    window = hostcheck.HostWindow.start(root)
    facts: dict[str, Any] = {"interval_s": interval, "missing": {}}
    readers = {"busy": lambda: hostcheck.busy_processes(interval, BUSY_SHARE, root=root),
               "load": lambda: hostcheck.load_average(root), "frequency": lambda: hostcheck.cpu_frequency(root),
               "memory": lambda: hostcheck.memory(root), "threads": hostcheck.thread_settings,
               "nvidia": hostcheck.nvidia, "ascend": hostcheck.ascend}
    for name, read in readers.items():
        facts[name], why = read()
        if why:
            facts["missing"][name] = why
    facts["window"] = window.stop()
    return facts


def _cpu(facts: dict[str, Any]) -> list[Finding]:
    out, missing, threads = [], facts["missing"], facts["threads"]
    cores = threads["cpu_count"] or 1
    if facts["busy"] is None:
        out.append(Finding("warn", "busy processes", f"not checked: {missing.get('busy')}"))
    for p in facts["busy"] or []:
        out.append(Finding("fail", "busy process", f"pid {p['pid']} {p['name']} used {p['share']:.2f} of a core "
                           f"({p['cmdline'] or p['name']})", f"wait for it to end, or stop it (kill {p['pid']})"))
    window = facts.get("window") or {}
    other, steal = window.get("other_cores_busy"), noise.steal_share(window)
    others = "" if other is None else f"; all others together {other:.2f} cores"
    if not facts["busy"] and other is not None and other > noise.other_cores_max():
        out.append(Finding("fail", "other cpu use", f"no single process above {BUSY_SHARE:.0%} of a core{others}"
                           f" (limit {noise.other_cores_max():g})", "find them with `top` and let them finish first"))
    elif facts["busy"] == []:
        out.append(Finding("ok", "busy processes", f"none above {BUSY_SHARE:.0%} of a core over "
                                                   f"{facts['interval_s']:g} s{others}"))
    if steal is not None and steal > noise.STEAL_MAX:
        out.append(Finding("fail", "cpu steal", f"the hypervisor took {steal:.1%} of CPU time (limit "
                           f"{noise.STEAL_MAX:.0%})", "use a dedicated or less crowded VM"))
    if facts["load"] is None:
        out.append(Finding("warn", "load average", f"not checked: {missing.get('load')}"))
    else:
        limit, load = LOAD_PER_CORE * cores, facts["load"][0]
        out.append(Finding("fail", "load average", f"1-minute load {load:.2f} > {limit:.2f} ({LOAD_PER_CORE} x "
                           f"{cores} cores)", f"wait until `uptime` shows a 1-minute load below {limit:.2f}")
                   if load > limit else Finding("ok", "load average", f"1-minute load {load:.2f} <= {limit:.2f}"))
    return out


def _clocks(facts: dict[str, Any]) -> list[Finding]:
    freq = facts["frequency"]
    if freq is None:
        return [Finding("ok", "cpu frequency", f"skipped: {facts['missing'].get('frequency')}")]
    out, governors = [], freq["governors"]
    mhz = f"; {freq['cur_mhz'][0]:.0f}-{freq['cur_mhz'][1]:.0f} MHz now" if freq["cur_mhz"] else ""
    if governors and governors != ["performance"]:
        out.append(Finding("warn", "cpu governor", f"governor {', '.join(governors)}: clocks follow the load{mhz}",
                           "sudo cpupower frequency-set -g performance"))
    elif governors:
        out.append(Finding("ok", "cpu governor", f"performance{mhz}"))
    if freq["boost"]:
        out.append(Finding("warn", "cpu boost", "boost/turbo on: clocks vary with temperature and active cores",
                           "echo 1 | sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo (intel_pstate), or "
                           "echo 0 | sudo tee /sys/devices/system/cpu/cpufreq/boost"))
    elif freq["boost"] is False:
        out.append(Finding("ok", "cpu boost", "off"))
    return out


def _memory(facts: dict[str, Any]) -> list[Finding]:
    mem = facts["memory"]
    if mem is None:
        return [Finding("warn", "memory", f"not checked: {facts['missing'].get('memory')}")]
    avail, swap = mem["available_mib"], mem["swap_used_mib"]
    out = [Finding("fail", "memory", f"{avail} MiB available < {MIN_MEM_AVAILABLE_MIB} MiB",
                   "close memory-hungry programs (`top -o %MEM`)") if avail < MIN_MEM_AVAILABLE_MIB else
           Finding("ok", "memory", f"{avail} of {mem['total_mib']} MiB available")]
    if swap > MAX_SWAP_USED_MIB:
        out.append(Finding("warn", "swap", f"{swap} MiB swapped out: a run may wait for pages coming back",
                           "free memory, then `sudo swapoff -a && sudo swapon -a`"))
    return out


def _threads(facts: dict[str, Any]) -> list[Finding]:
    threads = facts["threads"]
    env, affinity, cores = threads["env"], threads["affinity"], threads["cpu_count"]
    unset = [v for v in CORE_THREAD_VARS if not env.get(v)]
    given = ", ".join(f"{k}={v}" for k, v in env.items() if v)
    out = [Finding("warn", "thread settings", f"{', '.join(unset)} unset: frameworks pick their own thread counts"
                   + (f" ({given})" if given else ""), "`--set threads=N` (the harness sets it alike in every "
                   "backend), or export them") if unset else Finding("ok", "thread settings", given)]
    if affinity and cores and affinity < cores:
        out.append(Finding("ok", "cpu affinity", f"note: this process may run on {affinity} of {cores} CPUs",
                           f"size threads for {affinity} CPUs, not {cores}"))
    return out


def _nvidia(facts: dict[str, Any]) -> list[Finding]:
    gpus, why = facts["nvidia"], facts["missing"].get("nvidia")
    if gpus is None:
        if shutil.which("nvidia-smi") and "not installed" in (why or ""):
            return [Finding("warn", "nvidia", f"not checked: {why}", "pip install nvidia-ml-py")]
        return [Finding("ok", "nvidia", f"skipped: {why}")]
    out: list[Finding] = []
    for g in gpus:
        i, before = g["index"], len(out)
        tag = f"gpu{i} {g['name']}"
        clocks = f"SM {g['sm_mhz']}/{g['sm_max_mhz']} MHz, {g['temperature_c']} C"
        bad = [r for r in g["throttle"] or [] if r not in GPU_THROTTLE_OK]
        if bad:
            out.append(Finding("fail", "gpu throttle", f"{tag}: clocks held down by {', '.join(bad)} ({clocks})",
                               f"see `nvidia-smi -q -d PERFORMANCE -i {i}`: cool it, unload it, or reset clocks "
                               f"(sudo nvidia-smi -i {i} -rgc -rac)"))
        if g["persistence"] is False:
            out.append(Finding("warn", "gpu persistence", f"{tag}: persistence mode off: the driver reloads "
                               "between processes", f"sudo nvidia-smi -i {i} -pm 1"))
        limit, default = g["power_limit_w"], g["power_default_w"]
        if limit is not None and default is not None and limit < default:
            out.append(Finding("warn", "gpu power limit", f"{tag}: power limit {limit} W < default {default} W",
                               f"sudo nvidia-smi -i {i} -pl {default:g}"))
        if len(out) == before:
            out.append(Finding("ok", "gpu", f"{tag}: {clocks}, power limit {limit} W, persistence on"))
    return out


def _ascend(facts: dict[str, Any]) -> list[Finding]:
    npus = facts["ascend"]
    if npus is None:
        return [Finding("ok", "ascend", f"skipped: {facts['missing'].get('ascend')}")]
    out: list[Finding] = []
    for n in npus:
        tag, before = f"npu{n['npu']} {n['name']}", len(out)
        if n["health"].upper() != "OK":
            out.append(Finding("fail", "npu health", f"{tag}: health {n['health']}",
                               f"see `npu-smi info -t health -i {n['npu']}`"))
        if (n["aicore_pct"] or 0) > NPU_BUSY_AICORE_PCT:
            out.append(Finding("fail", "npu busy", f"{tag}: AICore {n['aicore_pct']:g}% busy",
                               "wait for the process in `npu-smi info` to end"))
        elif n["processes"]:
            out.append(Finding("warn", "npu processes", f"{tag}: {n['processes']} process(es) hold it",
                               "see the process table of `npu-smi info`"))
        if len(out) == before:
            out.append(Finding("ok", "npu", f"{tag}: health OK, {n['temperature_c']} C, {n['power_w']} W"))
    return out


def assess(facts: dict[str, Any]) -> list[Finding]:
    """Findings for :func:`gather`'s facts, one per check (one per process, GPU or NPU where there are several)."""
    return [f for rule in (_cpu, _clocks, _memory, _threads, _nvidia, _ascend) for f in rule(facts)]


def run_doctor(interval: float = 1.0) -> list[Finding]:
    return assess(gather(interval))


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(f.level == "fail" for f in findings) else 0


def render(findings: list[Finding]) -> str:
    rows = [(f.level.upper() if f.level != "ok" else "ok", f.check, f.detail, f.fix or "") for f in findings]
    fails, warns = (sum(f.level == lv for f in findings) for lv in ("fail", "warn"))
    verdict = (f"unfit for benchmarking: {fails} failed check(s), {warns} warning(s)" if fails else
               f"fit for benchmarking ({warns} warning(s))")
    return tabulate(rows, headers=("", "check", "detail", "fix"), tablefmt="simple") + "\n\n" + verdict


def quick_checks() -> dict[str, Any]:
    """The sleep-free checks for a record's ``env["host_checks"]`` (a few ms): load, CPU count and affinity,
    governors, boost, memory, swap, thread variables. ``busy`` is None: no sampling interval here (the
    runner's :class:`~harness.measure.host.HostWindow` measures other processes' CPU use during the cases)."""
    t0 = time.perf_counter()
    (load, w1), (freq, w2), (mem, w3), (threads, _) = (hostcheck.load_average(), hostcheck.cpu_frequency(),
                                                      hostcheck.memory(), hostcheck.thread_settings())
    return {"load_avg_1m": load[0] if load else None, "cpu_count": threads["cpu_count"],
            "affinity": threads["affinity"], "governors": freq["governors"] if freq else None,
            "boost": freq["boost"] if freq else None, "mem_available_mib": mem["available_mib"] if mem else None,
            "swap_used_mib": mem["swap_used_mib"] if mem else None, "thread_env": threads["env"], "busy": None,
            "unavailable": {k: w for k, w in (("load", w1), ("frequency", w2), ("memory", w3)) if w},
            "took_ms": round((time.perf_counter() - t0) * 1000, 1)}
