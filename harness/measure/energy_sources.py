"""The devices' own energy and power readings, one source per device kind, that
:class:`harness.measure.energy.EnergyMeter` reads:

* ``gpu``: NVML (``nvidia-ml-py``, module ``pynvml``; the ``[nvidia]`` extra, imported only here and only when a GPU
  case measures). The board's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and later)
  is read at both ends (source ``nvml-energy``); where the GPU has no counter, ``nvmlDeviceGetPowerUsage`` (mW) is
  sampled and integrated (``nvml-power``).
* ``ascend``: ``npu-smi info -t power -i N`` sampled and integrated (``npu-smi-power``).
* ``cpu``: RAPL through powercap (``/sys/class/powercap/intel-rapl:N/energy_uj``, also what recent kernels give on
  AMD), the package zones summed (``psys`` left out: it contains them), read at both ends; a counter that passed
  ``max_energy_range_uj`` is unwrapped, and a slow background read (twice per wrap period at 1 kW) catches a
  window longer than one wrap.

A source that cannot be read here raises :class:`Unavailable` with the reason the record gives.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

__all__ = ["EnergySource", "NpuSmiSource", "NvmlSource", "RaplSource", "Unavailable", "source_for"]


POWERCAP = "/sys/class/powercap"
#: Bound on one RAPL zone's power, for how often to read a counter that may wrap within the window.
RAPL_MAX_W = 1000.0


class Unavailable(Exception):
    """The source cannot be read here; the message is the reason for the record."""


class EnergySource:
    """A counter (``read_j``: cumulative joules) or a power reading (``power_w``) to sample every ``interval_s``."""

    name = ""
    counter = True
    #: A counter that may wrap within a window: read in the background often enough to undo every wrap.
    wraps = False
    interval_s = 0.1

    def open(self) -> None:
        """Check the source can be read (raise :class:`Unavailable` with the reason)."""

    def read_j(self) -> float:
        raise NotImplementedError

    def power_w(self) -> float:
        raise NotImplementedError

    def detail(self) -> dict[str, Any]:
        return {}


class RaplSource(EnergySource):
    """RAPL package counters through powercap (sum of the top-level zones but ``psys``)."""

    name = "rapl"
    wraps = True

    def __init__(self, root: str = POWERCAP) -> None:
        self.root = root
        self.zones: list[tuple[str, Path, int]] = []  # (name, energy_uj path, max range in uJ)
        self._last: list[int] = []
        self._total_uj = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        if not os.path.isdir(self.root):
            raise Unavailable(f"no {self.root} (RAPL not exposed on this host or VM)")
        tops = sorted(p for p in glob.glob(os.path.join(self.root, "*-rapl:*")) if re.search(r"rapl:\d+$", p))
        if not tops:
            raise Unavailable(f"no RAPL zones under {self.root} (no intel-rapl:N: powercap RAPL driver not loaded)")
        for top in tops:
            name = _read(Path(top, "name"), default=os.path.basename(top)).strip()
            if name == "psys":  # the platform zone holds the packages: summing it would count them twice
                continue
            energy = Path(top, "energy_uj")
            try:
                int(energy.read_text())
            except PermissionError:
                raise Unavailable(f"{energy} not readable: permission denied (root only since Linux 5.10; "
                                  "a udev rule or chmod can open it)") from None
            except (OSError, ValueError) as exc:
                raise Unavailable(f"{energy} not readable: {exc}") from None
            try:
                span = int(_read(Path(top, "max_energy_range_uj")))
            except (OSError, ValueError) as exc:
                raise Unavailable(f"{top}/max_energy_range_uj not readable: {exc}") from None
            self.zones.append((name, energy, span))
        if not self.zones:
            raise Unavailable(f"only a psys zone under {self.root}: no package counter")
        self.interval_s = max(1.0, min(span for _, _, span in self.zones) / 1e6 / RAPL_MAX_W / 2)

    def _raw(self) -> list[int]:
        return [int(path.read_text()) for _, path, _ in self.zones]

    def read_j(self) -> float:
        """Joules since the first read, each zone's wrap-around undone (at most one wrap between two reads)."""
        with self._lock:
            now = self._raw()
            if self._last:
                for (_, _, span), a, b in zip(self.zones, self._last, now):
                    self._total_uj += b - a if b >= a else b + span - a
            self._last = now
            return self._total_uj / 1e6

    def detail(self) -> dict[str, Any]:
        return {"domains": [name for name, _, _ in self.zones]}


def _read(path: Path, default: str | None = None) -> str:
    try:
        return path.read_text()
    except OSError:
        if default is None:
            raise
        return default


def _visible(var: str, local: int) -> str:
    """The device a process's local index ``local`` names, through a ``*_VISIBLE_DEVICES`` list when one is set."""
    listed = [d.strip() for d in os.environ.get(var, "").split(",") if d.strip()]
    return listed[local] if local < len(listed) else str(local)


class NvmlSource(EnergySource):
    """An NVIDIA GPU through NVML: the total-energy counter (``nvml-energy``), else the power reading sampled
    (``nvml-power``); ``nvml`` until opened."""

    name = "nvml"

    def __init__(self, local: int = 0, interval_s: float = 0.1, nvml: Any = None) -> None:
        self.local, self.interval_s, self._nvml = local, interval_s, nvml
        self.handle: Any = None
        self.device = ""

    def open(self) -> None:
        if self._nvml is None:
            try:
                import pynvml  # the [nvidia] extra (nvidia-ml-py)
            except ImportError:
                raise Unavailable("nvidia-ml-py not installed (pip install 'harness[nvidia]')") from None
            self._nvml = pynvml
        nv = self._nvml
        which = _visible("CUDA_VISIBLE_DEVICES", self.local)
        try:
            nv.nvmlInit()
            if which.startswith("MIG-"):
                raise Unavailable(f"CUDA_VISIBLE_DEVICES names a MIG instance ({which}): NVML reads power and "
                                  "energy of the whole GPU only")
            handle = (nv.nvmlDeviceGetHandleByIndex(int(which)) if which.isdigit()
                      else nv.nvmlDeviceGetHandleByUUID(which))
            name = nv.nvmlDeviceGetName(handle)
            self.device = name.decode() if isinstance(name, bytes) else str(name)
        except Unavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - NVMLError and its many subclasses: the reason for the record
            raise Unavailable(f"NVML: {str(exc) or type(exc).__name__}") from None
        self.handle = handle
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.name, self.counter = "nvml-energy", True
            return
        except Exception:  # noqa: BLE001 - not supported before Volta: sample the power instead
            pass
        try:
            nv.nvmlDeviceGetPowerUsage(handle)
        except Exception as exc:  # noqa: BLE001
            raise Unavailable(f"NVML on {self.device}: neither the energy counter nor the power reading is "
                              f"supported ({str(exc) or type(exc).__name__})") from None
        self.name, self.counter = "nvml-power", False

    def read_j(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) / 1e3

    def power_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1e3

    def detail(self) -> dict[str, Any]:
        return {"device": self.device}


_NPU_POWER = re.compile(r"power[^:\n]*:\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


class NpuSmiSource(EnergySource):
    """An Ascend NPU's power from ``npu-smi info -t power -i N``, sampled."""

    name = "npu-smi-power"
    counter = False

    def __init__(self, local: int = 0, interval_s: float = 0.5) -> None:
        which = _visible("ASCEND_RT_VISIBLE_DEVICES", local)
        self.npu = int(which) if which.isdigit() else local
        self.interval_s = interval_s
        self.exe = ""

    def open(self) -> None:
        self.exe = shutil.which("npu-smi") or ""
        if not self.exe:
            raise Unavailable("npu-smi not on PATH (Ascend driver tools not installed)")
        self.power_w()

    def power_w(self) -> float:
        try:
            out = subprocess.run([self.exe, "info", "-t", "power", "-i", str(self.npu)], capture_output=True,
                                 check=False, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"npu-smi: {exc}") from None
        lines = [ln for ln in out.stdout.splitlines() if "(W)" in ln or "power" in ln.lower()]
        found = next((m for ln in lines if (m := _NPU_POWER.search(ln))), None)
        if out.returncode != 0 or found is None:
            said = (out.stderr.strip() or out.stdout.strip()).splitlines()
            raise Unavailable(f"npu-smi info -t power -i {self.npu}: no power reading (exit {out.returncode}"
                              f"{': ' + said[0][:120] if said else ''})")
        return float(found.group(1))

    def detail(self) -> dict[str, Any]:
        return {"device": f"npu {self.npu}"}


def source_for(device: str, local: int = 0) -> EnergySource | None:
    """The source for a case's neutral device name (cpu, gpu, ascend), or None for another device."""
    if device == "cpu":
        return RaplSource()
    if device == "gpu":
        return NvmlSource(local)
    if device == "ascend":
        return NpuSmiSource(local)
    return None
