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
from pathlib import Path
from typing import Any, Iterable

from .errors import HarnessError

__all__ = ["SCHEMA", "RESULTS_FILE", "append_record", "read_records", "find_result_files"]

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


def append_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one record as a single line, flushed and fsynced before returning."""
    line = json.dumps(_clean(record), allow_nan=False, sort_keys=False) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write results: {exc.strerror}") from None


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of one file. A torn or invalid line is reported with its number and skipped."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read: {exc.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            print(f"harness: warning: {path}:{n}: torn or invalid record skipped", file=sys.stderr)
            continue
        if not isinstance(rec, dict) or not str(rec.get("schema", "")).startswith("harness.result/"):
            print(f"harness: warning: {path}:{n}: not a harness record, skipped", file=sys.stderr)
            continue
        out.append(rec)
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
