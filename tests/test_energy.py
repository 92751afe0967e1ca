"""Energy per case (harness.measure.energy): every sensor source faked - a powercap tree, a pynvml module, an npu-smi
executable - the loop's window around the timed steps, and null with the reason where nothing is readable."""
from __future__ import annotations

import os
import sys
import threading
import types
from pathlib import Path

import pytest

from harness.measure.energy import EnergyMeter, energy_record, integrate
from harness.measure.energy_sources import EnergySource, NpuSmiSource, NvmlSource, RaplSource, source_for
from harness.run.loop import TimedLoop


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- RAPL (powercap) ----

def zone(root: Path, name: str, label: str, uj: int, span: int) -> Path:
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{span}\n")
    return z


def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000, 10_000_000)
    zone(root, "intel-rapl:0:0", "core", 5, 10_000_000)  # a sub-zone of package 0: never added again
    zone(root, "intel-rapl:1", "package-1", 9_500_000, 10_000_000)  # about to wrap
    zone(root, "intel-rapl:2", "psys", 0, 10_000_000)  # the platform: holds the packages
    return root


def test_rapl_sums_the_packages_and_undoes_a_wrap(tmp_path):
    root = powercap(tmp_path)
    clock = Clock()
    meter = EnergyMeter(RaplSource(str(root)), clock=clock)
    meter.start()
    (root / "intel-rapl:0" / "energy_uj").write_text("4000000\n")  # +3 J
    (root / "intel-rapl:1" / "energy_uj").write_text("500000\n")  # wrapped: +0.5 J to the top, +0.5 J after
    (root / "intel-rapl:0:0" / "energy_uj").write_text("9999999\n")
    (root / "intel-rapl:2" / "energy_uj").write_text("9999999\n")
    clock.now += 2.0
    w = meter.stop()
    assert w["source"] == "rapl" and w["reason"] is None
    assert w["joules"] == pytest.approx(4.0) and w["seconds"] == pytest.approx(2.0)
    assert w["mean_w"] == pytest.approx(2.0)
    assert w["domains"] == ["package-0", "package-1"]
    rec = energy_record(w, images=8)
    assert rec["j_per_image"] == pytest.approx(0.5)


def test_rapl_reads_between_the_ends_catch_more_than_one_wrap(tmp_path):
    root = tmp_path / "powercap"
    z = zone(root, "intel-rapl:0", "package-0", 0, 1_000_000)
    src = RaplSource(str(root))
    src.open()
    assert src.read_j() == 0.0
    for uj, total in ((900_000, 0.9), (100_000, 1.1), (950_000, 1.95), (50_000, 2.05)):  # two wraps
        (z / "energy_uj").write_text(str(uj))
        assert src.read_j() == pytest.approx(total)
    # the background read comes at least twice per wrap period at RAPL_MAX_W (1 J span: never faster than 1 s)
    assert src.interval_s == 1.0


def test_rapl_not_readable_is_null_with_the_reason(tmp_path, monkeypatch):
    meter = EnergyMeter(RaplSource(str(tmp_path / "nothing")))
    meter.start()
    w = energy_record(meter.stop(), images=10)
    assert w["joules"] is None and w["j_per_image"] is None and w["mean_w"] is None
    assert w["source"] == "rapl" and "no " in w["reason"] and "RAPL not exposed" in w["reason"]

    root = powercap(tmp_path)
    denied = root / "intel-rapl:0" / "energy_uj"
    real = Path.read_text

    def read_text(self, *a, **k):
        if self == denied:
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    meter = EnergyMeter(RaplSource(str(root)))
    meter.start()
    w = meter.stop()
    assert w["joules"] is None and "energy_uj not readable: permission denied" in w["reason"]

    empty = tmp_path / "empty"
    empty.mkdir()
    meter = EnergyMeter(RaplSource(str(empty)))
    meter.start()
    assert "no RAPL zones" in meter.stop()["reason"]


def test_this_hosts_cpu_source_gives_a_number_or_a_reason():
    meter = EnergyMeter.for_device("cpu")
    meter.start()
    w = meter.stop()
    assert (w["joules"] is not None and w["joules"] >= 0) != bool(w["reason"])
    assert os.path.isdir("/sys/class/powercap") or "RAPL not exposed" in w["reason"]


# ---- NVML (a fake pynvml) ----

class NVMLError(Exception):
    pass


def fake_pynvml(energy_mj: list[int] | None, power_mw: int = 200_000) -> types.ModuleType:
    nv = types.ModuleType("pynvml")
    nv.opened = []

    def get_energy(handle):
        if energy_mj is None:
            raise NVMLError("Not Supported")
        return energy_mj[0]

    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetHandleByIndex = lambda i: nv.opened.append(i) or ("h", i)
    nv.nvmlDeviceGetHandleByUUID = lambda u: nv.opened.append(u) or ("h", u)
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    nv.nvmlDeviceGetTotalEnergyConsumption = get_energy
    nv.nvmlDeviceGetPowerUsage = lambda h: power_mw
    return nv


def test_nvml_energy_counter_read_at_both_ends(monkeypatch):
    counter = [1_000]
    nv = fake_pynvml(counter)
    monkeypatch.setitem(sys.modules, "pynvml", nv)  # the lazy import finds it
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    clock = Clock()
    meter = EnergyMeter(NvmlSource(local=1), clock=clock)
    meter.start()
    counter[0] = 51_000  # +50 J
    clock.now += 10.0
    w = meter.stop()
    assert nv.opened == [5]  # local device 1 of CUDA_VISIBLE_DEVICES=3,5
    assert w["source"] == "nvml-energy" and w["device"] == "NVIDIA H200"
    assert w["joules"] == pytest.approx(50.0) and w["mean_w"] == pytest.approx(5.0)
    assert "samples" not in w  # a counter: no sampling thread
    assert meter._thread is None


def in_the_sampler(read, sampled: threading.Event):
    """``read`` that sets ``sampled`` once the meter's sampling thread (not the test's) has called it."""
    def reading(*args):
        value = read(*args)
        if threading.current_thread() is not threading.main_thread():
            sampled.set()
        return value
    return reading


def test_nvml_without_a_counter_samples_the_power_and_integrates(monkeypatch):
    nv = fake_pynvml(None)
    power_mw = [200_000]
    sampled = threading.Event()
    nv.nvmlDeviceGetPowerUsage = in_the_sampler(lambda handle: power_mw[0], sampled)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234")
    clock = Clock()
    # a long interval: the thread samples once when the window opens, then waits for stop(), which samples last
    meter = EnergyMeter(NvmlSource(local=0, interval_s=3600.0), clock=clock)
    meter.start()
    assert sampled.wait(timeout=30)
    power_mw[0] = 300_000
    clock.now += 10.0
    w = meter.stop()
    assert nv.opened == ["GPU-1234"]
    assert w["source"] == "nvml-power" and w["reason"] is None and w["samples"] == 2
    # 200 W at the start, 300 W at the end of 10 s: the trapezoid
    assert w["seconds"] == pytest.approx(10.0) and w["joules"] == pytest.approx(2500.0)
    assert w["mean_w"] == pytest.approx(250.0)


def test_nvml_missing_or_failing_is_null_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    meter = EnergyMeter(NvmlSource())
    meter.start()
    w = meter.stop()
    assert w["joules"] is None and "nvidia-ml-py not installed" in w["reason"]

    nv = fake_pynvml(None)

    def no_driver():
        raise NVMLError("Driver Not Loaded")

    nv.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    meter = EnergyMeter(NvmlSource())
    meter.start()
    assert meter.stop()["reason"] == "NVML: Driver Not Loaded"


def test_integrate_is_the_trapezoid_with_the_ends_held():
    # 100 W at t=1, 300 W at t=3 over [0, 4]: 100 x 1 + (100 + 300) / 2 x 2 + 300 x 1
    assert integrate([(3.0, 300.0), (1.0, 100.0)], 0.0, 4.0) == pytest.approx(800.0)
    assert integrate([(5.0, 300.0)], 0.0, 4.0) == pytest.approx(1200.0)  # a late sample is clipped to the end


# ---- Ascend (a fake npu-smi) ----

NPU_SMI = """#!/bin/sh
# fake npu-smi: info -t power -i N
if [ "$1 $2 $3 $4" != "info -t power -i" ]; then echo "bad arguments: $*" >&2; exit 2; fi
if [ "$5" != "{npu}" ]; then echo "Error: the device $5 does not exist." ; exit 1; fi
echo "        NPU ID                         : $5"
echo "        Chip Count                     : 1"
echo ""
echo "        Power Dissipation(W)           : {watts}"
"""


def fake_npu_smi(tmp_path: Path, monkeypatch, npu: int = 6, watts: float = 68.5) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "npu-smi"
    exe.write_text(NPU_SMI.format(npu=npu, watts=watts))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def test_npu_smi_power_sampled_and_integrated(tmp_path, monkeypatch):
    fake_npu_smi(tmp_path, monkeypatch, npu=6, watts=68.5)
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,6")
    source, sampled, clock = NpuSmiSource(local=1, interval_s=3600.0), threading.Event(), Clock()
    source.power_w = in_the_sampler(source.power_w, sampled)  # each reading still runs the fake npu-smi
    meter = EnergyMeter(source, clock=clock)
    meter.start()
    assert sampled.wait(timeout=30)
    clock.now += 4.0
    w = meter.stop()
    assert w["source"] == "npu-smi-power" and w["reason"] is None and w["device"] == "npu 6"
    assert w["samples"] == 2 and w["seconds"] == pytest.approx(4.0)
    assert w["joules"] == pytest.approx(68.5 * 4.0)


def test_npu_smi_absent_or_failing_is_null_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    meter = EnergyMeter(NpuSmiSource(local=0))
    meter.start()
    w = meter.stop()
    assert w["joules"] is None and "npu-smi not on PATH" in w["reason"]

    fake_npu_smi(tmp_path, monkeypatch, npu=6)
    monkeypatch.delenv("ASCEND_RT_VISIBLE_DEVICES", raising=False)
    meter = EnergyMeter(NpuSmiSource(local=2))  # npu 2: the fake has only 6
    meter.start()
    w = meter.stop()
    assert w["joules"] is None and "no power reading (exit 1: Error: the device 2 does not exist.)" in w["reason"]


def test_no_source_and_no_timed_steps_are_null_with_the_reason():
    assert source_for("tpu") is None
    meter = EnergyMeter.for_device("tpu")
    meter.start()
    w = energy_record(meter.stop(), images=4)
    assert w == {"source": None, "joules": None, "seconds": None, "mean_w": None, "j_per_image": None,
                 "reason": "no energy source for device 'tpu'"}
    w = energy_record(None, images=4)
    assert w["joules"] is None and w["reason"].startswith("no timed steps")


# ---- the loop's window ----

class Counting(EnergySource):
    """A counter that logs every read into the loop's log (1 J per step done)."""

    name = "fake-counter"

    def __init__(self, log: list[str]) -> None:
        self.log, self.steps = log, 0

    def read_j(self) -> float:
        self.log.append("read")
        return float(self.steps)


def test_the_loop_reads_the_counter_once_at_each_end_of_the_timed_region():
    log: list[str] = []
    src = Counting(log)

    def step(i: int) -> None:
        log.append(f"step{i}")
        src.steps += 1

    loop = TimedLoop(lambda: log.append("sync"), energy=EnergyMeter(src))
    loop.run(step, 0, 6, timed_from=3)
    # warm-up untouched; the device settled, then the first read, then only steps and syncs (no more than without
    # the meter), then the last read
    assert log == ["sync", "step0", "sync", "step1", "step2", "sync", "read", "step3", "sync", "step4",
                   "sync", "step5", "sync", "read"]
    w = loop.energy_window
    assert w["joules"] == 3.0 and w["source"] == "fake-counter"
    assert energy_record(w, images=3 * 4)["j_per_image"] == pytest.approx(0.25)


def test_with_device_events_the_window_closes_after_the_one_synchronisation_at_the_end():
    log: list[str] = []
    src = Counting(log)

    class Events:
        def record(self):
            log.append("event")
            return len(log)

        @staticmethod
        def elapsed(a, b):
            return 1.0

    def step(i: int) -> None:
        log.append(f"step{i}")
        src.steps += 1

    loop = TimedLoop(lambda: log.append("sync"), events=Events(), energy=EnergyMeter(src))
    t = loop.run(step, 0, 4, timed_from=2)
    assert t.samples == [1.0, 1.0]
    assert log == ["sync", "step0", "sync", "step1", "sync", "read", "event", "step2", "event", "event", "step3",
                   "event", "sync", "read"]
    assert loop.energy_window["joules"] == 2.0


def test_a_loop_without_timed_steps_leaves_no_window():
    loop = TimedLoop(lambda: None, energy=EnergyMeter(Counting([])))
    loop.run(lambda i: None, 0, 2, timed_from=5)
    assert loop.energy_window is None


# ---- the record ----

def test_a_training_record_carries_energy_and_flops(tmp_path, fake_backend):
    from harness.models.flops import count_macs
    from harness.models.specs import get_model
    from harness.results.records import read_records
    from harness.run.runner import run_suite
    from harness.run.suite import load_suite

    suite = tmp_path / "fake.yaml"
    suite.write_text("models: [gluon_resnet50_v1b]\nbackends: [fake]\ndevices: [cpu]\n"
                     "settings: {batch_size: 4, steps: 5, warmup: 2, width: 0.25, image_size: 64}\n")
    (rec,) = read_records(run_suite(load_suite(suite), tmp_path / "results", run_id="r", quiet=True)
                          / "results.jsonl")
    assert rec["status"] == "ok"
    train = rec["metrics"]["train"]
    energy = train["energy"]
    assert set(energy) >= {"source", "joules", "seconds", "mean_w", "j_per_image", "reason"}
    assert energy["source"] == "rapl"
    if energy["joules"] is None:  # this host gives no RAPL: null with the reason, never 0
        assert energy["reason"] and energy["j_per_image"] is None
    else:
        assert energy["j_per_image"] == pytest.approx(energy["joules"] / (4 * 5))
    assert rec["metrics"]["eval"]["energy"]["source"] == "rapl"
    flops = train["flops"]
    n = count_macs(get_model("gluon_resnet50_v1b", width=0.25, image_size=64))
    assert flops["macs_per_image"] == n.macs and flops["flops_per_image_train"] == 6 * n.macs
    assert flops["achieved_tflops"] == pytest.approx(6 * n.macs * train["images_per_s"] / 1e12)
    # the fake's device model is no known device, but a CPU case's peak is derived from this host's CPU
    assert (flops["mfu"] is None) == (flops["peak_tflops"] is None)
    if flops["peak_tflops"]:
        assert flops["mfu"] == pytest.approx(flops["achieved_tflops"] / flops["peak_tflops"])
        assert flops["peak_source"].startswith("derived:")
