"""The suite's ``cluster:`` section (``--set cluster.KEY=VALUE`` overrides it) and what one case's job asks for.

::

    cluster:
      partition: gpu              # sbatch --partition
      account: perf               # --account
      qos: normal                 # --qos
      time: "4:00:00"             # --time; default: the case's timeout plus 10 minutes
      devices_per_node: 8         # a case with more devices spans nodes: devices 16 -> 2 nodes of 8
      gres: {cuda: gpu, ascend: npu}   # the GRES name of each device kind (--gres=NAME:N per node)
      cpus_per_task: 32           # --cpus-per-task (one task per node: the case's launcher)
      mem: 480G                   # --mem per node (or mem_per_cpu)
      max_jobs: 16                # jobs submitted and not yet ended, at most
      poll_s: 10                  # seconds between the scheduler's state reads
      setup: ["source /usr/local/Ascend/ascend-toolkit/set_env.sh"]   # shell lines before the case, in the job
      sbatch_options: ["--exclusive", "--constraint=a100"]            # anything else, passed as given
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from harness.config import Case
from harness.errors import HarnessError, near

__all__ = ["Cluster", "load_cluster", "place", "sbatch_options", "time_limit_minutes"]

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class Cluster:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    devices_per_node: int | None = None
    gres: dict[str, str] = field(default_factory=lambda: {"cuda": "gpu", "ascend": "npu"})
    cpus_per_task: int | None = None
    mem: str | None = None
    mem_per_cpu: str | None = None
    max_jobs: int = 16
    poll_s: float = 10.0
    setup: tuple[str, ...] = ()
    sbatch_options: tuple[str, ...] = ()


KEYS = tuple(f.name for f in dataclasses.fields(Cluster))
_STRINGS = ("partition", "account", "qos", "time", "mem", "mem_per_cpu")
_COUNTS = ("devices_per_node", "cpus_per_task", "max_jobs")


def time_limit_minutes(text: str) -> int:
    """A Slurm time (``minutes``, ``minutes:seconds``, ``hours:minutes:seconds``, ``days-hours[:minutes[:seconds]]``)
    in whole minutes, as Slurm keeps it (rounded up)."""
    m = _TIME.match(text.strip())
    if not m:
        raise ValueError(text)
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # days-hours[:minutes[:seconds]]
        seconds = days * 86400 + (a or 0) * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # hours:minutes:seconds
        seconds = (a or 0) * 3600 + (b or 0) * 60 + c
    elif b is not None:  # minutes:seconds
        seconds = (a or 0) * 60 + b
    else:  # minutes
        seconds = (a or 0) * 60
    return max(1, math.ceil(seconds / 60))


def load_cluster(raw: Any, overrides: dict[str, Any], where: str) -> Cluster:
    """The ``cluster:`` mapping of a suite, with ``--set cluster.KEY=VALUE`` applied, checked: one line naming the key
    (and the nearest valid one) for anything wrong."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HarnessError(f"{where}: cluster: expected a mapping, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for source, doc in ((f"{where}: cluster", raw), ("--set cluster", overrides)):
        for key, value in doc.items():
            at = f"{source}.{key}"
            if key not in KEYS:
                raise HarnessError(f"{at}: unknown key{near(str(key), KEYS)} (keys: {', '.join(KEYS)})")
            values[key] = _checked(key, value, at)
    return Cluster(**values)


def _checked(key: str, value: Any, at: str) -> Any:
    if key in _STRINGS:
        if value is None:
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise HarnessError(f"{at}: expected text, got {type(value).__name__}")
        if key == "time":
            try:
                time_limit_minutes(str(value))
            except ValueError:
                raise HarnessError(f"{at}: '{value}' is not a Slurm time (minutes, MM:SS, HH:MM:SS or "
                                   "D-HH:MM:SS)") from None
        return str(value)
    if key in _COUNTS:
        if value is None and key != "max_jobs":
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HarnessError(f"{at}: expected a whole number of at least 1, got {value!r}")
        return value
    if key == "poll_s":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.1 <= value <= 600:
            raise HarnessError(f"{at}: expected seconds between 0.1 and 600, got {value!r}")
        return float(value)
    if key == "gres":
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                  for k, v in value.items()):
            raise HarnessError(f"{at}: expected a mapping of device kind to GRES name, e.g. {{cuda: gpu}}")
        return dict(value)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HarnessError(f"{at}: expected a list of text lines")
    if key == "sbatch_options":
        for v in value:
            if not v.startswith("-"):
                raise HarnessError(f"{at}: '{v}' is not an sbatch option (e.g. --exclusive)")
    return tuple(value)


def place(case: Case, cluster: Cluster) -> Case:
    """``case`` as it runs on the cluster: with ``devices_per_node`` set, a case of more devices than a node holds
    spans ``devices / devices_per_node`` nodes (``devices: 16`` on 8-device nodes: 2 nodes of 8); a case that names
    ``nodes`` itself keeps its ``devices`` per node."""
    s, per = case.settings, cluster.devices_per_node
    if not per or s.nodes > 1 or s.devices <= per:
        return case
    if s.devices % per:
        raise HarnessError(f"case {case.name}: devices {s.devices} is not a whole number of {per}-device nodes "
                           "(cluster.devices_per_node)")
    return dataclasses.replace(case, settings=dataclasses.replace(s, devices=per, nodes=s.devices // per))


def sbatch_options(case: Case, cluster: Cluster) -> list[str]:
    """What the case's job asks Slurm for: one task per node (the case's launcher), its devices as GRES, and the
    section's partition, account, QoS, time limit, CPUs and memory."""
    s = case.settings
    out = [f"--nodes={s.nodes}", "--ntasks-per-node=1"]
    for key in ("partition", "account", "qos"):
        if getattr(cluster, key):
            out.append(f"--{key}={getattr(cluster, key)}")
    minutes = time_limit_minutes(cluster.time) if cluster.time else math.ceil(s.timeout / 60) + 10
    out.append(f"--time={minutes}")
    gres = cluster.gres.get(case.device)
    if gres:
        out.append(f"--gres={gres}:{s.devices}")
    cpus = cluster.cpus_per_task or (s.threads * s.devices if s.threads else None)
    if cpus:
        out.append(f"--cpus-per-task={cpus}")
    if cluster.mem:
        out.append(f"--mem={cluster.mem}")
    if cluster.mem_per_cpu:
        out.append(f"--mem-per-cpu={cluster.mem_per_cpu}")
    return out + list(cluster.sbatch_options)
