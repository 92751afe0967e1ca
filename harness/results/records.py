"""Result records: append-only JSON Lines, one whole record per line.

Layout: ``results/<suite>/<run-id>/results.jsonl`` with each case's folder
(working directory, ``case.log``) under ``cases/``. Every record carries
``schema`` so readers can tell versions apart.
"""
from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

__all__ = ["SCHEMA", "RESULTS_FILE", "append_record", "write_record", "read_records", "find_result_files", "get"]

SCHEMA = "harness.result/1"
RESULTS_FILE = "results.jsonl"


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def get(d: dict[str, Any], *path: str) -> Any:
    """The value at ``path`` in a record (``get(rec, "metrics", "train", "images_per_s")``), or None where any key
    on the way is missing or not a dict."""
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)  # type: ignore[assignment]
    return d


def _line(record: dict[str, Any]) -> str:
    return json.dumps(_clean(record), allow_nan=False, sort_keys=False) + "\n"


def write_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """One record to a file of its own, whole or not at all: written beside it, fsynced, then renamed over it (a case
    that ran elsewhere, e.g. as a Slurm job, leaves its record so; the run's results file is assembled from them)."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as f:
            f.write(_line(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
    except OSError as exc:
        raise HarnessError(f"{target}: cannot write the record: {exc.strerror}") from None


def append_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one record as a single line, flushed and fsynced before returning."""
    line = _line(record)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write results: {exc.strerror}") from None


#: What a measured record must hold for reports and the gate to read it (a published one: ``kind: published``).
_REQUIRED = (("case", str), ("status", str), ("config", dict))


#: Fields of a measured record and the type each must have when present (None is allowed for all).
_SHAPES = {"metrics": dict, "samples": dict, "env": dict, "noise": dict, "repeat": int, "repeats": int,
           "reason": str, "run_id": str, "config.settings": dict, "config.variant": dict, "config.model": str,
           "config.backend": str, "config.device": str, "metrics.train.energy": dict, "metrics.eval.energy": dict,
           "metrics.train.flops": dict, "metrics.train.profile": dict, "metrics.train.profile.categories": dict,
           "metrics.train.profile.top_ops": list, "selection": list}
#: Leaves of ``metrics`` that reports read as numbers.
_NUMBERS = frozenset({"images_per_s", "timed_steps", "first_step_s", "loss_last", "top1", "top5", "time_s",
                      "total_time_s", "p50", "p90", "p99", "mean", "std", "min", "max", "host_peak_bytes",
                      "device_peak_bytes",
                      # metrics.<scenario>.energy (harness.measure.energy) and metrics.train.flops
                      # (harness.models.flops)
                      "joules", "mean_w", "j_per_image", "macs_per_image", "flops_per_image_fwd",
                      "flops_per_image_train", "achieved_tflops", "peak_tflops", "mfu",
                      # metrics.train.profile (harness.measure.profiles)
                      "step_s", "attributed_s", "unattributed_s", "coverage", "timed_step_s"})


def _numbers(values: Any, depth: int) -> bool:
    """A list of numbers (None: a NaN or infinite value, cleaned when written), or of such lists."""
    return isinstance(values, list) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) or (depth > 1 and _numbers(v, 1))
        for v in values)


def _misshapen(rec: dict[str, Any]) -> str | None:
    """What in a measured record has the wrong type (for the error), or None."""
    for dotted, kind in _SHAPES.items():
        value: Any = rec
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            return f"'{dotted}' of type {type(value).__name__} (expected {kind.__name__})"
    for name, values in (rec.get("samples") or {}).items():
        per_rank = isinstance(values, dict) and all(_numbers(v, 1) for v in values.values())
        if not (per_rank or _numbers(values, depth=2)):
            return f"'samples.{name}' that is not a list of numbers (or of per-rank lists)"

    def leaves(d: dict[str, Any], where: str) -> str | None:
        for key, value in d.items():
            if isinstance(value, dict):
                found = leaves(value, f"{where}.{key}")
                if found:
                    return found
            elif key in _NUMBERS and value is not None and (isinstance(value, bool)
                                                            or not isinstance(value, (int, float))):
                return f"'{where}.{key}' = {str(value)[:40]!r} (expected a number)"
        return None

    profile = ((rec.get("metrics") or {}).get("train") or {}).get("profile") or {}
    if not _numbers(list((profile.get("categories") or {}).values()), 1) or not all(
            isinstance(op, dict) and _numbers([op.get("self_s_per_step")], 1) for op in profile.get("top_ops") or []):
        return "'metrics.train.profile' whose categories or top_ops do not hold seconds per step"
    return leaves(rec.get("metrics") or {}, "metrics")


def read_records(path: str | os.PathLike[str], empty_ok: bool = False) -> list[dict[str, Any]]:
    """All records of one file.

    A line that is not JSON (a torn last line after a crash, a stray byte) is reported with its number and skipped,
    as is a JSON line of another tool among harness records. A file that is binary, UTF-16, or holds no harness
    record at all (unless ``empty_ok``: a run resumed before its first record), and a harness record without its
    case, status or config, are refused in one line naming the file and line: a report of them would be empty or
    wrong.
    """
    from harness.files import read_text

    text = read_text(path, "results file", max_bytes=None)
    out, foreign = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            print(f"harness: warning: {path}:{n}: torn or invalid record skipped", file=sys.stderr)
            continue
        if not isinstance(rec, dict) or not str(rec.get("schema", "")).startswith("harness.result/"):
            foreign.append(n)
            continue
        if rec.get("kind", "measured") == "measured":
            for key, kind in _REQUIRED:
                if not isinstance(rec.get(key), kind):
                    raise HarnessError(f"{path}:{n}: a harness record without a valid '{key}' (expected "
                                       f"{kind.__name__}, got {type(rec.get(key)).__name__}): not a record harness "
                                       "wrote, or edited by hand")
            wrong = _misshapen(rec)
            if wrong:
                raise HarnessError(f"{path}:{n}: a harness record with {wrong}: not a record harness wrote, or edited "
                                   "by hand")
        out.append(rec)
    if not out and not (empty_ok and not text.strip()):
        what = (f"no harness records (line {foreign[0]} is JSON of another tool: no \"schema\": \"{SCHEMA}\")"
                if foreign else "no records (the file is empty)" if not text.strip() else "no valid records")
        raise HarnessError(f"{path}: {what}")
    if foreign:
        print(f"harness: warning: {path}: {len(foreign)} line(s) are not harness records, skipped (first: line "
              f"{foreign[0]})", file=sys.stderr)
    return out


def find_result_files(paths: Iterable[str]) -> list[Path]:
    """Expand run folders (searched recursively) and files into ``.jsonl`` paths."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.jsonl"))
            if not found:
                raise HarnessError(f"{p}: no .jsonl result files in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise HarnessError(f"{p}: no such file or folder")
    return files
