"""History across runs: every run under a results folder, case by case, from an embedded SQLite index.

The JSON Lines of the runs (``<results>/<suite>/<run_id>/results.jsonl``, read through
:func:`harness.results.records.read_records`) stay the source of truth; ``<results>/.history.sqlite`` only indexes them
(one row per record with the numbers history shows) so that a results folder with many runs is not parsed again
each time. The index is built when missing, refreshed file by file when a results file's size or modification
time changed (or it was removed), and rebuilt from the JSON Lines when it is corrupt, of another tool, or of an
older layout. A results folder that cannot be written to gets an index in memory.

:func:`history_frame` gives the history as a DataFrame (one row per case and run) for reports and trend charts;
``harness history`` prints it.
"""
from __future__ import annotations

import fnmatch
import json
import os
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config import has_accuracy
from harness.errors import HarnessError
from harness.measure.intervals import mean_ci, rate
from harness.results.case_rules import identity_differences, identity_key, representative
from harness.results.records import RESULTS_FILE, get, read_records

__all__ = ["DB_NAME", "open_index", "refresh", "history_frame", "render_history"]

DB_NAME = ".history.sqlite"
#: The index's layout; an index of another layout (or of another tool: user_version 0) is rebuilt. HIS2: a case's
#: images/s is its representative measurement's (:func:`harness.results.case_rules.representative`), so an index of
#: HIS1, which took an inference case's framework evaluation for it, is read again.
#: HIS3 adds each record's identity (:func:`harness.results.case_rules.identity_key`), so history can show where two
#: runs of a case differ in settings, and leaves top-1 out for synthetic data.
LAYOUT = 0x48495333  # "HIS3"

#: Record fields the index keeps, in column order (all text or numbers).
COLUMNS = ("suite", "run_id", "case_name", "repeat", "status", "reason", "started_at", "duration_s",
           "images_per_s", "measure", "top1", "model", "backend", "device", "harness_version", "git_commit",
           "framework", "framework_version", "identity")

_DDL = f"""
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL);
CREATE TABLE records (path TEXT NOT NULL, line INTEGER NOT NULL, {", ".join(COLUMNS)});
CREATE INDEX records_path ON records (path);
PRAGMA user_version = {LAYOUT};
"""


def _row(path: str, line: int, rec: dict[str, Any]) -> tuple[Any, ...]:
    m, env, cfg = rec.get("metrics") or {}, rec.get("env") or {}, rec.get("config") or {}
    measure = representative(rec)
    ips, what = (measure.images_per_s, measure.label) if measure is not None else (None, None)
    top1 = get(m, "eval", "top1")
    if top1 is None:
        top1 = get(m, "inference", "accuracy", "top1")
    if not has_accuracy(cfg.get("settings") or {}):
        top1 = None  # random labels: a top-1 means nothing (the one rule, harness.config.has_accuracy)
    return (path, line, rec.get("suite"), rec.get("run_id"), rec.get("case"), rec.get("repeat", 0),
            rec.get("status"), rec.get("reason"), rec.get("started_at"), rec.get("duration_s"), ips, what, top1,
            cfg.get("model"), cfg.get("backend"), cfg.get("device"), env.get("harness_version"),
            env.get("git_commit"), env.get("framework"), env.get("framework_version"), identity_key(cfg))


def _valid(con: sqlite3.Connection) -> bool:
    """An index of this layout (the tables it needs present)?"""
    if con.execute("PRAGMA user_version").fetchone()[0] != LAYOUT:
        return False
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"files", "records"} <= tables:
        return False
    cols = [r[1] for r in con.execute("PRAGMA table_info(records)")]
    return cols == ["path", "line", *COLUMNS]


def open_index(results: str | os.PathLike[str]) -> sqlite3.Connection:
    """The index of ``results`` (made, or rebuilt when it is not a valid index of this layout), not yet refreshed."""
    root = Path(results)
    if not root.is_dir():
        raise HarnessError(f"{root}: no such results folder")
    db = root / DB_NAME
    for _ in range(2):  # a second try after removing a damaged index
        try:
            con = sqlite3.connect(db, timeout=30)
            if _valid(con):
                return con
            con.close()
            db.unlink(missing_ok=True)  # corrupt, foreign or an older layout: the JSON Lines rebuild it
            con = sqlite3.connect(db, timeout=30)
            con.executescript(_DDL)
            return con
        except sqlite3.DatabaseError:  # not a database at all, or damaged
            try:
                db.unlink(missing_ok=True)
            except OSError:
                break
        except OSError:
            break
    print(f"harness: warning: {db}: cannot keep the history index there; indexing in memory", file=sys.stderr)
    con = sqlite3.connect(":memory:")
    con.executescript(_DDL)
    return con


def result_files(results: str | os.PathLike[str]) -> list[Path]:
    """Every run's results file under ``results`` (``<suite>/<run_id>/results.jsonl``)."""
    return sorted(p for p in Path(results).glob(f"*/*/{RESULTS_FILE}") if p.is_file())


def refresh(con: sqlite3.Connection, results: str | os.PathLike[str]) -> dict[str, int]:
    """Bring the index up to date with the results files: those new or changed (size or modification time) are
    read again, those gone are dropped. Returns how many files were ``read``, ``dropped`` and left ``unchanged``.
    A results file that cannot be read is reported (one warning line) and left out."""
    root = Path(results)
    known = {path: (size, mtime) for path, size, mtime in con.execute("SELECT path, size, mtime_ns FROM files")}
    counts = {"read": 0, "dropped": 0, "unchanged": 0}
    seen = set()
    with con:
        for f in result_files(root):
            path = f.relative_to(root).as_posix()
            seen.add(path)
            st = f.stat()
            if known.get(path) == (st.st_size, st.st_mtime_ns):
                counts["unchanged"] += 1
                continue
            con.execute("DELETE FROM records WHERE path = ?", (path,))
            con.execute("DELETE FROM files WHERE path = ?", (path,))
            try:
                records = read_records(f, empty_ok=True)
            except HarnessError as exc:
                print(f"harness: warning: history leaves out {exc}", file=sys.stderr)
                continue
            con.executemany(f"INSERT INTO records VALUES ({', '.join('?' * (len(COLUMNS) + 2))})",
                            [_row(path, n, r) for n, r in enumerate(records)
                             if r.get("kind", "measured") == "measured"])
            con.execute("INSERT INTO files VALUES (?, ?, ?)", (path, st.st_size, st.st_mtime_ns))
            counts["read"] += 1
        for path in set(known) - seen:
            con.execute("DELETE FROM records WHERE path = ?", (path,))
            con.execute("DELETE FROM files WHERE path = ?", (path,))
            counts["dropped"] += 1
    return counts


def _joined(values: Iterable[Any]) -> str | None:
    out = list(dict.fromkeys(str(v) for v in values if v is not None and not pd.isna(v)))
    return ", ".join(out) if out else None


def _one_run(g: pd.DataFrame) -> dict[str, Any]:
    """One case in one run: the newest record of each repetition (a resumed run appends), throughput as the median
    over the ok ones with its 95% interval when there are several, top-1 as their mean."""
    latest = g.sort_values("line").groupby("repeat").tail(1)
    ok = latest[latest["status"] == "ok"]
    statuses = set(latest["status"])
    status = next((s for s in ("failed", "skipped") if s in statuses), "ok" if statuses == {"ok"} else
                  ", ".join(sorted(map(str, statuses))))
    est = rate(list(ok["images_per_s"].dropna()))
    acc = mean_ci(list(ok["top1"].dropna())) if ok["top1"].notna().any() else None
    return {
        "date": min((d for d in latest["started_at"] if isinstance(d, str)), default=None),
        "status": status, "reason": _joined(latest.loc[latest["status"] != "ok", "reason"]),
        "runs": len(latest), "images_per_s": est.value if est else None,
        "ci_low": est.lo if est else None, "ci_high": est.hi if est else None,
        "measure": _joined(ok["measure"]), "top1": acc.value if acc else None,
        **{k: _joined(latest[k]) for k in ("model", "backend", "device", "harness_version", "git_commit",
                                           "framework", "framework_version", "identity")},
    }


#: Columns of :func:`history_frame`, in order.
FRAME_COLUMNS = ("case", "suite", "run_id", "date", "status", "reason", "runs", "images_per_s", "ci_low", "ci_high",
                 "measure", "top1", "model", "backend", "device", "harness_version", "git_commit", "framework",
                 "framework_version", "identity", "path")


def history_frame(results: str | os.PathLike[str] = "results", pattern: str | None = None) -> pd.DataFrame:
    """The history of every case (whose name matches the glob ``pattern``, when given) under ``results``: one row
    per case and run, oldest run first within a case (:data:`FRAME_COLUMNS`; ``date`` is the run's first start of
    the case, ISO 8601 UTC; ``ci_low``/``ci_high`` are set where the case was repeated). The index is refreshed
    first. No runs, or no case matching ``pattern``, raise :class:`HarnessError`."""
    con = open_index(results)
    try:
        refresh(con, results)
        df = pd.read_sql_query("SELECT * FROM records", con)
    finally:
        con.close()
    if df.empty:
        raise HarnessError(f"{results}: no runs (expected {results}/<suite>/<run_id>/{RESULTS_FILE})")
    if pattern:
        names = sorted(set(df["case_name"]))
        df = df[[fnmatch.fnmatchcase(c, pattern) for c in df["case_name"]]]
        if df.empty:
            raise HarnessError(f"no case matches '{pattern}' in the runs under {results} (cases: "
                               f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    rows = [{"case": case, "suite": suite, "run_id": run_id, "path": path, **_one_run(g)}
            for (case, suite, run_id, path), g in df.groupby(["case_name", "suite", "run_id", "path"], dropna=False)]
    out = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    return out.sort_values(["case", "date", "run_id"], na_position="last", kind="stable").reset_index(drop=True)


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None or pd.isna(value) else spec.format(value)


def _changes(before: Any, now: Any) -> str:
    """What differs between two runs of a case: its settings (identity) and the framework's version."""
    out = []
    if before.identity != now.identity:
        try:
            out += identity_differences(json.loads(before.identity), json.loads(now.identity), ("before", "now"))
        except (TypeError, ValueError):  # a run whose repetitions disagree, or an index row without one
            out.append("settings differ")
    if before.framework_version != now.framework_version:
        out.append(f"framework {before.framework_version} -> {now.framework_version}")
    return "; ".join(out)


def render_history(df: pd.DataFrame) -> str:
    """Per case, a table of its runs: date, run, status, images/s (with the 95% interval of repetitions), top-1
    and the harness, framework and git versions."""
    from tabulate import tabulate

    out = []
    for case, g in df.groupby("case", sort=True):
        rows = []
        r: Any  # a row of the frame: its columns as attributes
        before: Any = None
        for r in g.itertuples(index=False):
            changed = _changes(before, r) if before is not None else ""
            before = r
            ips = _fmt(r.images_per_s, "{:.1f}")
            if ips and r.ci_low is not None and not pd.isna(r.ci_low):
                ips += f" [{r.ci_low:.1f}, {r.ci_high:.1f}]"
            rows.append({
                "date": (r.date or "")[:19].replace("T", " "), "suite/run": f"{r.suite}/{r.run_id}",
                "status": r.status if r.status == "ok" else f"{r.status}: {(r.reason or '')[:60]}",
                "images/s": ips + (f" ({r.measure})" if ips and r.measure and r.measure != "train" else ""),
                "runs": r.runs, "top-1 %": _fmt(r.top1, "{:.2f}"), "harness": r.harness_version or "",
                "framework": " ".join(filter(None, [r.framework, r.framework_version])),
                "git": (r.git_commit or "")[:12] + ("+dirty" if (r.git_commit or "").endswith("+dirty") else ""),
                "changed since the run before": changed,
            })
        out.append(f"## {case}\n\n" + tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    return "\n\n".join(out) + "\n"
