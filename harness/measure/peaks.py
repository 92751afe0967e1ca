"""Peak FLOP/s of known devices (for model FLOPs utilisation), each entry citing where its figures come from.

Accelerator peaks are dense (no structured sparsity: NVIDIA's datasheets print the H100/H200 tensor-core figures
"with sparsity", twice the dense ones, which are given here), in TFLOP/s, per precision the harness runs:
``fp32`` (CUDA cores), ``tf32``, ``bf16`` and ``fp16`` (tensor cores / the Ascend cube unit). None: the vendor
publishes no figure for that precision. An fp32 case on a device with TF32 is compared with the TF32 peak: cuDNN,
through torch by default, runs fp32 convolutions in TF32 on those devices, so the fp32 figure would make MFU
look higher than it is.

A CPU's peak is derived, not looked up: cores x FLOPs per cycle per core (from the vector width its
``/proc/cpuinfo`` flags give) x clock, for the cores the case runs on (its thread count, at most the physical
cores).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.measure.environment import cpuinfo_text

__all__ = ["DevicePeak", "PEAKS", "find", "peak", "cpu_peak"]


@dataclass(frozen=True)
class DevicePeak:
    name: str
    pattern: str  # regex on the record's env.device_model (case-insensitive, first match wins)
    tflops: dict[str, float | None] = field(default_factory=dict)
    source: str = ""


_V100 = ("NVIDIA Tesla V100 GPU datasheet (https://images.nvidia.com/content/technologies/volta/pdf/"
         "volta-v100-datasheet-update-us-1165301-r5.pdf): single precision and tensor performance")
_A100 = ("NVIDIA A100 Tensor Core GPU datasheet (https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/"
         "a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf): dense figures (sparsity x2 not used)")
_H100 = ("NVIDIA H100 Tensor Core GPU datasheet (https://resources.nvidia.com/en-us-tensor-core/"
         "nvidia-tensor-core-gpu-datasheet): tensor figures printed with sparsity, halved to dense")
_H200 = ("NVIDIA H200 product page and datasheet (https://www.nvidia.com/en-us/data-center/h200/): tensor "
         "figures printed with sparsity, halved to dense")
_A910 = ("Huawei press release 'Huawei launches Ascend 910, the world's most powerful AI processor' (2019-08-23, "
         "https://www.huawei.com/en/news/2019/8/huawei-ascend-910-most-powerful-ai-processor) and Hot Chips 31 "
         "(2019) DaVinci talk: 256 TFLOPS FP16; no fp32/bf16 figure published")

#: Known devices, most specific pattern first.
PEAKS: tuple[DevicePeak, ...] = (
    DevicePeak("V100S PCIe", r"V100S", {"fp32": 16.4, "fp16": 130.0}, _V100),
    DevicePeak("V100 PCIe", r"V100.*PCIE", {"fp32": 14.0, "fp16": 112.0}, _V100),
    DevicePeak("V100 SXM2", r"V100", {"fp32": 15.7, "fp16": 125.0}, _V100),
    DevicePeak("A100", r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}, _A100),
    DevicePeak("H100 PCIe", r"H100.*PCIE", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5}, _H100),
    DevicePeak("H100 NVL", r"H100.*NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}, _H100),
    DevicePeak("H100 SXM", r"H100", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}, _H100),
    DevicePeak("H200 NVL", r"H200.*NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}, _H200),
    DevicePeak("H200 SXM", r"H200", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}, _H200),
    DevicePeak("Ascend 910B", r"910\s*B", {"fp32": None, "bf16": None, "fp16": None},
               "no vendor datasheet figure found for the 910B: MFU is left empty rather than built on a "
               "third-party estimate"),
    DevicePeak("Ascend 910", r"910", {"fp32": None, "bf16": None, "fp16": 256.0}, _A910),
)


def find(device_model: str | None) -> DevicePeak | None:
    """The table entry whose pattern matches ``device_model``, or None."""
    if not device_model:
        return None
    return next((p for p in PEAKS if re.search(p.pattern, device_model, re.IGNORECASE)), None)


def _max_ghz() -> tuple[float | None, str]:
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text().split()[0])
        return khz / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError, IndexError):
        return None, ""


def _flops_per_cycle(flags: set[str], vendor: str, precision: str) -> tuple[float | None, str]:
    """fp32 FLOPs per cycle per core from the vector extensions, two FMA (or add + mul) pipes assumed."""
    if "avx512f" in flags and "fma" in flags:
        # AMD Zen 4 runs 512-bit instructions on its 256-bit pipes; Zen 5 (which adds AVX-VNNI) has 512-bit ones.
        if vendor == "AuthenticAMD" and "avx_vnni" not in flags:
            per, how = 32.0, "AVX-512 on 2 x 256-bit FMA pipes (AMD Zen 4): 2 x 8 lanes x 2"
        else:
            per, how = 64.0, "AVX-512 FMA, 2 units: 2 x 16 lanes x 2"
    elif "avx2" in flags and "fma" in flags:
        per, how = 32.0, "AVX2 FMA, 2 units: 2 x 8 lanes x 2"
    elif "avx" in flags:
        per, how = 16.0, "AVX, one add + one mul pipe: 2 x 8 lanes"
    elif "sse2" in flags:
        per, how = 8.0, "SSE2, one add + one mul pipe: 2 x 4 lanes"
    else:
        return None, "no x86 vector flags in /proc/cpuinfo: no FLOPs-per-cycle rule for this CPU"
    if precision == "bf16":
        if "amx_bf16" in flags:
            return None, "bf16 on a CPU with AMX: the AMX peak is not modelled"
        if "avx512_bf16" in flags:
            return per * 2, how + "; x2 for AVX512_BF16 dot products"
    return per, how


def cpu_peak(threads: int | None = None, precision: str = "fp32", cpuinfo: str | None = None,
             ghz: float | None = None) -> tuple[float | None, str]:
    """(TFLOP/s, how it was derived) of the cores a CPU case runs on."""
    text = cpuinfo_text() if cpuinfo is None else cpuinfo
    if not text:
        return None, "/proc/cpuinfo not readable"
    fields: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    phys = core = ""
    for line in [*text.splitlines(), ""]:
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not key and (phys or core):
            cores.add((phys, core))
            phys = core = ""
        if key and key not in fields:
            fields[key] = value
    logical = text.count("processor\t:") or text.count("processor :") or os.cpu_count() or 1
    physical = len(cores) or logical
    used = min(threads or physical, physical)
    per, how = _flops_per_cycle(set(fields.get("flags", "").split()), fields.get("vendor_id", ""), precision)
    if per is None:
        return None, how
    clock_how = "given"
    if ghz is None:
        ghz, clock_how = _max_ghz() if cpuinfo is None else (None, "")
    if ghz is None:
        try:
            ghz, clock_how = float(fields["cpu MHz"]) / 1e3, "/proc/cpuinfo cpu MHz (current clock)"
        except (KeyError, ValueError):
            return None, "no CPU clock in /proc/cpuinfo or cpufreq"
    tflops = used * per * ghz / 1e3
    return tflops, (f"derived: {used} cores x {per:g} FLOPs/cycle ({how}) x {ghz:.2f} GHz ({clock_how}); "
                   f"{fields.get('model name', 'CPU')}")


def peak(device: str, device_model: str | None, precision: str = "fp32", threads: int | None = None,
         cpuinfo: str | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s for ``precision`` on this device, its source), or (None, why not)."""
    if device == "cpu":
        return cpu_peak(threads, precision, cpuinfo)
    entry = find(device_model)
    if entry is None:
        return None, f"device '{device_model or device}' is not in the peak table (harness/measure/peaks.py)"
    key = "tf32" if precision == "fp32" and entry.tflops.get("tf32") else precision
    value = entry.tflops.get(key)
    if value is None:
        return None, f"{entry.name}: no published {precision} peak ({entry.source})"
    note = " (fp32 convolutions run in TF32 on this device by default)" if key != precision else ""
    return value, f"{entry.name} {key}{note}: {entry.source}"


def describe() -> list[dict[str, Any]]:
    """The table as rows (for documentation and ``harness flops``)."""
    return [{"device": p.name, **{k: p.tflops.get(k) for k in ("fp32", "tf32", "bf16", "fp16")}, "source": p.source}
            for p in PEAKS]
