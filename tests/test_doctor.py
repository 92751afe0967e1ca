"""harness doctor: a fake quiet and busy host (fake /proc and /sys trees, a fake pynvml, a fake npu-smi), then a
smoke run on this machine and a real CPU hog."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import types

import pytest

from harness.measure import doctor, noise
from harness.measure import host as hostcheck

CORES = os.cpu_count() or 1


def fake_host(root, load=0.0, governor="performance", boost="0", available_kb=16 << 20, swap_free_kb=None):
    """A /proc and /sys tree of a host with ``CORES`` CPUs."""
    (root / "proc/1").mkdir(parents=True)  # one idle process: 0 ticks at both ends of the sample
    (root / "proc/1/stat").write_text("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n")
    (root / "proc/loadavg").write_text(f"{load:.2f} {load:.2f} {load:.2f} 1/100 4242\n")
    (root / "proc/stat").write_text("cpu  100 0 50 1000 5 0 1 2 0 0\ncpu0 100 0 50 1000 5 0 1 2 0 0\n")
    swap_free = 4 << 20 if swap_free_kb is None else swap_free_kb
    (root / "proc/meminfo").write_text(f"MemTotal: {32 << 20} kB\nMemFree: {available_kb} kB\nMemAvailable: "
                                       f"{available_kb} kB\nSwapTotal: {4 << 20} kB\nSwapFree: {swap_free} kB\n")
    cpu = root / "sys/devices/system/cpu"
    for i in range(CORES):
        (cpu / f"cpu{i}/cpufreq").mkdir(parents=True)
        for name, value in (("scaling_governor", governor), ("scaling_cur_freq", 2_400_000),
                            ("scaling_min_freq", 800_000), ("scaling_max_freq", 3_600_000)):
            (cpu / f"cpu{i}/cpufreq" / name).write_text(f"{value}\n")
    (cpu / "cpufreq").mkdir()
    (cpu / "cpufreq/boost").write_text(boost + "\n")
    return root


@pytest.fixture
def host(tmp_path, monkeypatch):
    """Quiet by default: thread variables set, no pynvml, no npu-smi; call it with fake_host's options."""
    for var in doctor.CORE_THREAD_VARS:
        monkeypatch.setenv(var, "2")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()

    def check(**kwargs):
        root = fake_host(tmp_path / "root", **kwargs)
        return doctor.assess(doctor.gather(interval=0.01, root=root))
    return check


def levels(findings, level):
    return [f for f in findings if f.level == level]


def test_quiet_host_passes(host):
    findings = host()
    assert levels(findings, "fail") == [] and levels(findings, "warn") == [], doctor.render(findings)
    assert doctor.exit_status(findings) == 0
    assert {"busy processes", "load average", "cpu governor", "cpu boost", "memory", "thread settings"} <= {
        f.check for f in findings}
    assert "fit for benchmarking" in doctor.render(findings)


def test_busy_process_fails_with_name_and_share(host, monkeypatch):
    hog = {"pid": 4242, "name": "stress-ng", "cmdline": "stress-ng --cpu 1", "share": 0.93}
    monkeypatch.setattr(hostcheck, "busy_processes", lambda *a, **k: ([hog], None))
    [fail] = levels(host(), "fail")
    assert fail.check == "busy process" and "stress-ng" in fail.detail and "0.93" in fail.detail
    assert "kill 4242" in fail.fix


def test_high_load_fails(host):
    findings = host(load=CORES * doctor.LOAD_PER_CORE + 0.5)
    [fail] = levels(findings, "fail")
    assert fail.check == "load average" and doctor.exit_status(findings) == 1
    assert "unfit" in doctor.render(findings)


def test_powersave_governor_and_boost_warn(host):
    findings = host(governor="powersave", boost="1")
    warns = {f.check: f for f in levels(findings, "warn")}
    assert "powersave" in warns["cpu governor"].detail
    assert warns["cpu governor"].fix == "sudo cpupower frequency-set -g performance"
    assert "cpu boost" in warns and doctor.exit_status(findings) == 0


def test_low_memory_fails_and_swap_warns(host):
    findings = host(available_kb=1 << 20, swap_free_kb=3 << 20)
    [fail] = levels(findings, "fail")
    assert fail.check == "memory" and "1024 MiB available" in fail.detail
    assert [w.check for w in levels(findings, "warn")] == ["swap"]


def test_missing_sources_are_skipped_not_raised(tmp_path, host, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")
    (tmp_path / "empty").mkdir()
    facts = doctor.gather(interval=0.01, root=tmp_path / "empty")
    findings = doctor.assess(facts)
    assert facts["frequency"] is None and "cpufreq" in facts["missing"]["frequency"]
    assert facts["memory"] is None and facts["window"]["unavailable"] == "no /proc/stat"
    nvidia = next(f for f in findings if f.check == "nvidia")
    assert nvidia.level == "ok" and nvidia.detail == "skipped: pynvml (nvidia-ml-py) not installed"
    assert next(f for f in findings if f.check == "ascend").detail.startswith("skipped: npu-smi not on PATH")
    assert "OMP_NUM_THREADS unset" in next(f for f in findings if f.check == "thread settings").detail
    doctor.render(findings)

STEAL_AT_LIMIT = noise.STEAL_MAX * 2 * 10.0  # steal seconds at the limit over a 10 s window of a 2-core host


@pytest.mark.parametrize("window,unfit", [({"other_cores_busy": noise.OTHER_CORES_MAX - 0.01}, False),
                                          ({"other_cores_busy": noise.OTHER_CORES_MAX + 0.01}, True),
                                          ({"steal_s": 0.99 * STEAL_AT_LIMIT}, False),
                                          ({"steal_s": 1.01 * STEAL_AT_LIMIT}, True)])
def test_doctor_fails_exactly_where_a_run_would_be_flagged_unstable(tmp_path, host, window, unfit):
    # One set of host limits (harness.measure.noise): the doctor passes a window noise.assess accepts and fails one
    # it flags, just either side of each limit.
    host()
    facts = doctor.gather(interval=0.01, root=tmp_path / "root")
    facts["window"] = {"wall_s": 10.0, "cpu_count": 2, "other_cores_busy": 0.0, "steal_s": 0.0, **window}
    failed = {f.check for f in levels(doctor.assess(facts), "fail")}
    assert bool(failed) == noise.assess([0.1] * 20, facts["window"])["unstable"] == unfit
    assert failed <= {"other cpu use", "cpu steal"}



def fake_pynvml(throttle: int, persistence: int = 1, limit_mw: int = 700_000):
    nv = types.ModuleType("pynvml")
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM, nv.NVML_TEMPERATURE_GPU, nv.NVML_FEATURE_ENABLED = 1, 2, 0, 1
    nv.nvmlClocksThrottleReasonGpuIdle, nv.nvmlClocksThrottleReasonHwSlowdown = 0x1, 0x8
    calls = []
    nv.nvmlInit, nv.nvmlShutdown = (lambda: calls.append("init")), (lambda: calls.append("shutdown"))
    nv.nvmlDeviceGetCount = lambda: 1
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H200"  # older bindings return bytes
    nv.nvmlDeviceGetClockInfo = lambda h, c: 1100 if c == 1 else 2600
    nv.nvmlDeviceGetMaxClockInfo = lambda h, c: 1980 if c == 1 else 2619
    nv.nvmlDeviceGetPersistenceMode = lambda h: persistence
    nv.nvmlDeviceGetPowerManagementLimit = lambda h: limit_mw
    nv.nvmlDeviceGetPowerManagementDefaultLimit = lambda h: 700_000
    nv.nvmlDeviceGetPowerManagementLimitConstraints = lambda h: [200_000, 700_000]
    nv.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: throttle
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 71
    nv.calls = calls
    return nv


def test_fake_gpu_throttled_fails_and_persistence_off_warns(host, monkeypatch):
    nv = fake_pynvml(throttle=0x8 | 0x40, persistence=0, limit_mw=500_000)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    gpus, why = hostcheck.nvidia()
    assert why is None and gpus[0]["name"] == "NVIDIA H200" and gpus[0]["throttle"] == ["HwSlowdown",
                                                                                        "HwThermalSlowdown"]
    assert gpus[0]["power_max_w"] == 700.0 and nv.calls == ["init", "shutdown"]
    findings = host()
    [fail] = levels(findings, "fail")
    assert fail.check == "gpu throttle" and "HwSlowdown, HwThermalSlowdown" in fail.detail
    assert "SM 1100/1980 MHz" in fail.detail and doctor.exit_status(findings) == 1
    warns = {f.check: f for f in levels(findings, "warn")}
    assert warns["gpu persistence"].fix == "sudo nvidia-smi -i 0 -pm 1"
    assert "500.0 W < default 700.0 W" in warns["gpu power limit"].detail


def test_fake_idle_gpu_passes(host, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(throttle=0x1))
    findings = host()
    assert doctor.exit_status(findings) == 0 and levels(findings, "warn") == []
    assert any(f.check == "gpu" and "gpu0 NVIDIA H200" in f.detail for f in findings)


def test_nvml_init_failure_is_a_reason(monkeypatch):
    def no_driver():
        raise RuntimeError("Driver Not Loaded")
    nv = fake_pynvml(0)
    nv.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    assert hostcheck.nvidia() == (None, "NVML not available: Driver Not Loaded")


NPU_SMI = """\
+------------------------------------------------------------------------------------------------+
| npu-smi 23.0.rc2                 Version: 23.0.rc2                                             |
+---------------------------+---------------+----------------------------------------------------+
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |
+===========================+===============+====================================================+
| 0     910B3               | OK            | 93.6        36                0    / 0             |
| 0                         | 0000:C1:00.0  | 0           0    / 0          3339 / 65536         |
+===========================+===============+====================================================+
| 1     910B3               | {health:<14}| 180.2       44                0    / 0             |
| 0                         | 0000:C2:00.0  | {aicore:<12}0    / 0          30339/ 65536         |
+===========================+===============+====================================================+
| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |
+===========================+===============+====================================================+
| 1       0                 | 31337         | python                   | 27000                   |
+===========================+===============+====================================================+
"""


@pytest.mark.parametrize("health,aicore,checks", [("OK", 0, {"npu processes"}),
                                                  ("Warning", 0, {"npu health", "npu processes"}),
                                                  ("OK", 87, {"npu busy"})])
def test_fake_npu_smi(host, tmp_path, health, aicore, checks):
    script = tmp_path / "bin/npu-smi"
    (tmp_path / "npu.txt").write_text(NPU_SMI.format(health=health, aicore=aicore))
    script.write_text(f"#!/bin/sh\nexec /bin/cat {tmp_path / 'npu.txt'}\n")
    script.chmod(0o755)
    npus, why = hostcheck.ascend()
    assert why is None and [(n["npu"], n["name"], n["health"]) for n in npus] == [(0, "910B3", "OK"),
                                                                                  (1, "910B3", health)]
    assert (npus[0]["power_w"], npus[0]["temperature_c"], npus[1]["aicore_pct"]) == (93.6, 36, aicore)
    assert [n["processes"] for n in npus] == [0, 1]
    findings = host()
    assert {f.check for f in findings if f.level != "ok"} == checks
    assert any(f.check == "npu" and "npu0 910B3" in f.detail for f in findings)


def test_host_window_counts_own_children(tmp_path):
    probe = hostcheck.HostWindow.start()
    subprocess.run([sys.executable, "-c", ("import time\nt = time.process_time()\n"
                                           "while time.process_time() - t < 0.4: pass")], check=True)
    facts = probe.stop()
    assert set(facts) >= {"wall_s", "host_busy_cpu_s", "own_cpu_s", "other_cpu_s", "other_cores_busy", "steal_s",
                          "load_avg_1m", "cpu_count"}
    assert facts["own_cpu_s"] >= 0.35 and facts["other_cpu_s"] >= 0 and len(facts["load_avg_1m"]) == 2
    (tmp_path / "proc").mkdir()
    assert hostcheck.HostWindow.start(tmp_path).stop()["unavailable"] == "no /proc/stat"


def test_quick_checks_are_cheap():
    checks = doctor.quick_checks()
    assert set(checks) >= {"load_avg_1m", "cpu_count", "affinity", "governors", "boost", "mem_available_mib",
                           "swap_used_mib", "thread_env", "busy"}
    assert checks["busy"] is None and checks["took_ms"] < 50


def test_real_machine_smoke():
    # Whatever this host is like: every check reports, the exit status is 1 exactly when one failed, and the table
    # shows every finding under its check with the verdict that matches.
    findings = doctor.run_doctor(interval=0.2)
    assert all(f.level in ("ok", "warn", "fail") for f in findings)
    assert {"load average", "memory", "thread settings"} <= {f.check for f in findings}
    assert {"busy process", "busy processes", "other cpu use"} & {f.check for f in findings}
    failed = [f for f in findings if f.level == "fail"]
    assert doctor.exit_status(findings) == (1 if failed else 0)
    text = doctor.render(findings)
    assert all(f.check in text and f.detail[:40] in text for f in findings), text
    verdict = text.splitlines()[-1]
    assert verdict.startswith(f"unfit for benchmarking: {len(failed)} failed" if failed else "fit for benchmarking")


def test_real_cpu_hog_is_detected():
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 2: pass"])
    try:
        time.sleep(0.3)
        busy, why = hostcheck.busy_processes(interval=1.0, min_share=0.2)
    finally:
        hog.kill()
        hog.wait()
    assert why is None
    [mine] = [p for p in busy if p["pid"] == hog.pid]
    assert mine["name"].startswith("python") and "time.time()" in mine["cmdline"]
    others = sum(p["share"] for p in busy if p is not mine)  # a shared host may leave the hog no free core
    assert mine["share"] > (0.5 if others <= CORES - 1 else doctor.BUSY_SHARE), busy
