"""What the energy meter costs the work it measures: a CPU-bound loop with and without it, side by side.

Each round runs the same work twice, once bare and once inside ``EnergyMeter.start() .. stop()``, in alternating
order. The script prints, per meter and work, the time per step of each side (the fastest round: the least
disturbed by other processes), their ratio, the median of the per-round ratios, and the CPU time the meter added
per second of window (CPU per step of this process's threads and its child processes, metered minus bare, over
the metered step's wall time: the measure least moved by a busy host). Three
meters, one per kind of source, each faked where this host has no such sensor (the cost is the harness's
machinery, not the sensor's):

* ``counter``: a counter read at both ends and a background read for wrap-around (RAPL; NVML's energy counter
  has no thread at all), on a fake powercap tree;
* ``sampler``: NVML's power reading sampled every 0.1 s in a thread (a fake ``pynvml`` module: the thread's
  wake-ups and its hold on the GIL, not the driver call);
* ``subprocess``: ``npu-smi`` run every 0.5 s in a thread (a fake ``npu-smi`` shell script: a real fork and exec
  per reading).

Two kinds of work: ``python`` (a pure-Python loop, the worst case: it holds the GIL the sampler also needs) and
``numpy`` (matrix products in BLAS threads, like a framework's step).

    python benchmarks/energy/run.py                 # about a minute
    python benchmarks/energy/run.py --rounds 9 --seconds 1
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread: the work is one core's, as in a fixed pool
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from harness.measure.energy import EnergyMeter
from harness.measure.energy_sources import NpuSmiSource, NvmlSource, RaplSource


def python_work(n: int = 20_000) -> None:
    total = 0
    for i in range(n):
        total += i * i % 7


A = np.random.default_rng(0).standard_normal((256, 256))


def numpy_work() -> None:
    A @ A


def _cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def timed(work, seconds: float) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per call of ``work`` over about ``seconds``."""
    n, t0, c0 = 0, time.perf_counter(), _cpu()
    while True:
        work()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return dt / n, (_cpu() - c0) / n


def meters(tmp: Path) -> dict[str, object]:
    zone = tmp / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0")
    (zone / "energy_uj").write_text("123456")
    (zone / "max_energy_range_uj").write_text("262143328850")
    nv = types.ModuleType("pynvml")
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: "fake"

    def no_counter(h):
        raise RuntimeError("Not Supported")

    nv.nvmlDeviceGetTotalEnergyConsumption = no_counter
    nv.nvmlDeviceGetPowerUsage = lambda h: 250_000
    sys.modules["pynvml"] = nv
    exe = tmp / "bin" / "npu-smi"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\necho '        Power Dissipation(W)           : 68.5'\n")
    exe.chmod(0o755)
    os.environ["PATH"] = f"{exe.parent}{os.pathsep}{os.environ['PATH']}"
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    os.environ.pop("ASCEND_RT_VISIBLE_DEVICES", None)
    return {"counter": lambda: EnergyMeter(RaplSource(str(tmp / "powercap"))),
            "sampler": lambda: EnergyMeter(NvmlSource(0, interval_s=0.1)),
            "subprocess": lambda: EnergyMeter(NpuSmiSource(0, interval_s=0.5))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=0.5, help="seconds of work per side per round")
    args = ap.parse_args()
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        made = meters(Path(tmp))
        print("| meter | work | bare ms/step (fastest) | metered ms/step (fastest) | ratio of fastest | "
              "median ratio [range] | meter CPU ms per s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, make in made.items():
            for label, work in (("python", python_work), ("numpy", numpy_work)):
                ratios, bare_s, metered_s, extra_cpu = [], [], [], []
                for r in range(args.rounds):
                    meter = make()
                    sides = {}
                    for side in (("bare", "metered") if r % 2 == 0 else ("metered", "bare")):
                        if side == "metered":
                            meter.start()
                            sides[side] = timed(work, args.seconds)
                            window = meter.stop()
                            assert window["joules"] is not None, window
                        else:
                            sides[side] = timed(work, args.seconds)
                    bare_s.append(sides["bare"][0])
                    metered_s.append(sides["metered"][0])
                    ratios.append(sides["metered"][0] / sides["bare"][0])
                    # CPU per step is the same work on both sides: the difference is the meter's, per wall second
                    extra_cpu.append((sides["metered"][1] - sides["bare"][1]) / sides["metered"][0])
                print(f"| {name} | {label} | {1e3 * min(bare_s):.3f} | {1e3 * min(metered_s):.3f} | "
                      f"{min(metered_s) / min(bare_s):.4f} | {statistics.median(ratios):.3f} "
                      f"[{min(ratios):.2f}-{max(ratios):.2f}] | {1e3 * statistics.median(extra_cpu):.2f} |",
                      flush=True)
        print("\n| meter | one reading (median of 20) | readings per s | share of one core |")
        print("| --- | --- | --- | --- |")
        for name, make in made.items():
            src = make().source
            src.open()
            read = src.read_j if src.counter else src.power_w
            costs = []
            for _ in range(20):
                t0 = time.perf_counter()
                read()
                costs.append(time.perf_counter() - t0)
            per_s = 1 / src.interval_s
            print(f"| {name} | {1e6 * statistics.median(costs):.1f} us | {per_s:.3g} | "
                  f"{100 * statistics.median(costs) * per_s:.4f}% |")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
