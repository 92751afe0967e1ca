"""Named baselines for the gate (``harness baseline save``, ``harness compare --baseline NAME``), and the hosts two
sets of records were measured on.

A baseline is a folder ``<store>/<name>/`` holding the measured records of the run it was saved from
(``results.jsonl``, unchanged: each record carries its environment) and ``baseline.json`` (the name, where and
when it was saved, and the environment per case). The store is ``--store``, else ``$HARNESS_BASELINES``, else
``./baselines``. Saving over an existing name needs ``--replace``: refreshing a baseline is an explicit step, never
a side effect of a run or a comparison.

The gate refuses two runs measured on different hosts (:func:`host_differences`: the CPU model, the device model,
the framework's version, per case) unless asked to compare them anyway: a slowdown between machines is not a
regression of the code.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, near
from harness.results.records import find_result_files, read_records

__all__ = ["HOST_KEYS", "baseline_store", "save_baseline", "baseline_path", "host_differences", "BASELINE_FILE"]

#: What makes two records' hosts different for the gate: ``env`` keys (a backend's framework version is per case).
HOST_KEYS = ("cpu", "device_model", "framework_version")
BASELINE_FILE = "baseline.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def baseline_store(store: str | os.PathLike[str] | None = None) -> Path:
    """The folder baselines live in: ``store``, else ``$HARNESS_BASELINES``, else ``./baselines``."""
    return Path(store or os.environ.get("HARNESS_BASELINES") or "baselines")


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a refresh interrupted halfway leaves the old file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise HarnessError(f"baseline name {name!r}: letters, digits, '.', '_' and '-' only (e.g. main or ci-small)")


def save_baseline(run: str, name: str, store: str | os.PathLike[str] | None = None, replace: bool = False) -> Path:
    """Store the measured records under ``run`` (a run folder, a folder of them, or a results.jsonl) as baseline
    ``name``; its folder."""
    _check_name(name)
    records = [r for f in find_result_files([run]) for r in read_records(f) if r.get("kind", "measured") == "measured"]
    if not records:
        raise HarnessError(f"{run}: no measured records to save as a baseline")
    if not any(r.get("status") == "ok" for r in records):
        raise HarnessError(f"{run}: no case finished ok; a baseline of failures gates nothing")
    folder = baseline_store(store) / name
    if (folder / BASELINE_FILE).exists() and not replace:
        raise HarnessError(f"{folder}: baseline '{name}' exists (--replace to refresh it)")
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "results.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    cases = {r["case"]: {k: (r.get("env") or {}).get(k) for k in HOST_KEYS} for r in records}
    meta = {"name": name, "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source": os.path.abspath(run), "records": len(records), "cases": cases}
    _write(folder / BASELINE_FILE, json.dumps(meta, indent=1) + "\n")
    return folder


def baseline_path(name: str, store: str | os.PathLike[str] | None = None) -> Path:
    """The records of baseline ``name``; one line naming the store and a near match when there is none."""
    _check_name(name)
    root = baseline_store(store)
    folder = root / name
    if not (folder / BASELINE_FILE).is_file():
        names = sorted(p.name for p in root.iterdir() if (p / BASELINE_FILE).is_file()) if root.is_dir() else []
        have = f" (saved: {', '.join(names)})" if names else " (none saved: harness baseline save RUN --name NAME)"
        raise HarnessError(f"baseline '{name}': not in {root}{near(name, names)}{have}")
    return folder / "results.jsonl"


def host_differences(baseline: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """Where the hosts of two runs differ, per case both ran: ``case c: cpu: 'AMD EPYC' in the baseline, 'Intel
    Xeon' in the current run``. A key a record does not hold is not compared."""
    def hosts(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {r["case"]: r.get("env") or {} for r in records if isinstance(r.get("case"), str)}

    b, c = hosts(baseline), hosts(current)
    out = []
    for case in sorted(set(b) & set(c)):
        for key in HOST_KEYS:
            x, y = b[case].get(key), c[case].get(key)
            if x is not None and y is not None and x != y:
                out.append(f"case {case}: {key}: {x!r} in the baseline, {y!r} in the current run")
    return out
