"""How fair a cross-framework ratio is: the file the fairness benchmark writes (``benchmarks/fairness/run.py --out``)
and what it says, printed by the benchmark and shown by ``harness report --fairness FILE``.

The benchmark runs, for each backend, `harness run` and a plain training loop written the way that framework's own
examples write it ("the expert"), alternated in fresh processes, and keeps each side's images/s per round. From
those this module gives, with the 95% intervals of :mod:`harness.measure.intervals`:

* per backend, harness / expert (1.00x: the harness runs the framework as fast as its own examples do);
* per pair of backends at the same precision, the cross-framework ratio as harness measures it and as the plain
  loops measure it, and how far apart the two are: per round (harness other / reference) / (expert other /
  reference), its geometric mean with an interval over the rounds, as a difference in %;
* beside them, the ratio the report computes from its own records for that pair
  (:func:`harness.results.tables.backend_ratios`).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.files import read_text
from harness.measure.intervals import delta_text, rate, ratio, ratio_text
from harness.results.tables import backend_ratios, reference_backend

__all__ = ["SCHEMA", "check_fairness", "read_fairness", "fairness_table", "fairness_note", "summary_lines"]

SCHEMA = "harness.fairness/1"
#: What the report shows above the table.
NOTE = ("From the fairness benchmark (benchmarks/fairness/run.py): for each backend, `harness run` and a plain "
        "training loop written the way that framework's own examples write it, over a model implementation that is "
        "not harness's, with the same shapes, optimizer, loss and precision, alternated in fresh processes. Every "
        "ratio is paired by round (the geometric mean of the per-round ratios, with its 95% interval over the "
        "rounds), so that the machine's drift between rounds cancels. "
        "harness / plain loop near 1.00x: the harness runs that framework as fast as its own examples do. A "
        "cross-framework ratio is as fair as its two backends' harness / plain loop ratios are alike: 'harness vs "
        "plain loops' is how far the harness's ratio is from the plain loops' (per round, with its 95% interval "
        "over the rounds); the report's own ratio for the pair follows.")


def _positive_numbers(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value)


def check_fairness(obj: Any, where: str) -> dict[str, Any]:
    """``obj`` if it is a fairness result, else one line naming ``where`` and the key at fault."""
    if not isinstance(obj, dict):
        raise HarnessError(f"{where}: not a fairness result (a JSON object with 'schema': '{SCHEMA}')")
    if obj.get("schema") != SCHEMA:
        raise HarnessError(f"{where}: 'schema' is {obj.get('schema')!r}, expected '{SCHEMA}' (the file "
                           "benchmarks/fairness/run.py --out writes)")
    for key in ("model", "device"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise HarnessError(f"{where}: '{key}' must be a non-empty string")
    if not isinstance(obj.get("backends"), list) or not obj["backends"]:
        raise HarnessError(f"{where}: 'backends' must be a non-empty list (one entry per backend measured)")
    for i, entry in enumerate(obj["backends"]):
        at = f"backends[{i}]"
        if not isinstance(entry, dict):
            raise HarnessError(f"{where}: '{at}' must be an object")
        for key in ("backend", "precision"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise HarnessError(f"{where}: '{at}.{key}' must be a non-empty string")
        if not isinstance(entry.get("channels_last", False), bool):
            raise HarnessError(f"{where}: '{at}.channels_last' must be true or false")
        for side in ("harness", "expert"):
            if not _positive_numbers(entry.get(side)):
                raise HarnessError(f"{where}: '{at}.{side}' must be a non-empty list of positive numbers (images/s, "
                                   "one per round)")
    return obj


def read_fairness(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A fairness result file, checked, or one line naming it and what is wrong."""
    try:
        obj = json.loads(read_text(path, "fairness result file"))
    except ValueError as exc:
        raise HarnessError(f"{path}: not a fairness result (not JSON: {exc})") from None
    return {**check_fairness(obj, str(path)), "path": str(path)}


def _variant(entry: dict[str, Any]) -> str:
    return str(entry["precision"]) + (" channels-last" if entry.get("channels_last") else "")


def _pairs(fair: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(other, reference) entries measured at the same precision and memory format."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for entry in fair["backends"]:
        by_variant.setdefault(_variant(entry), []).append(entry)
    for entries in by_variant.values():
        ref = reference_backend(e["backend"] for e in entries)
        for entry in entries:
            if entry["backend"] != ref:
                yield entry, next(e for e in entries if e["backend"] == ref)


def _gap(other: dict[str, Any], ref: dict[str, Any]) -> str:
    """How far the harness's other / reference is from the plain loops', per round, as a difference in %."""
    per_round = [(ho / hr) / (eo / er) for ho, hr, eo, er in
                 zip(other["harness"], ref["harness"], other["expert"], ref["expert"], strict=False)]
    est = rate(per_round)
    return delta_text(est, 1.0) if est is not None else ""


def _ratio(a: list[float], b: list[float]) -> str:
    """``a / b`` paired by round: the geometric mean of the per-round ratios with a t interval over their logs. Each
    round measures both sides back to back, so a machine whose speed drifts between rounds (a shared VM) moves both and
    the pairing takes the drift out; the ratio of the two sides' geometric means would keep it."""
    est = rate([x / y for x, y in zip(a, b, strict=False)]) if len(a) == len(b) else ratio(a, b)
    return ratio_text(est) if est is not None else ""


def _images(values: list[float]) -> str:
    est = rate(values)
    return est.fmt("{:.2f}") if est is not None else ""


def summary_lines(fair: dict[str, Any]) -> list[str]:
    """What the benchmark prints: each backend's images/s and harness / expert, then each pair's ratio both ways."""
    lines = []
    for e in fair["backends"]:
        lines.append(f"{e['backend']:>10} {_variant(e)}: harness {_images(e['harness'])} img/s, expert "
                     f"{_images(e['expert'])} img/s; harness / expert {_ratio(e['harness'], e['expert'])}")
    for other, ref in _pairs(fair):
        o, r = other["backend"], ref["backend"]
        lines.append(f"{o} / {r} ({_variant(ref)}): harness {_ratio(other['harness'], ref['harness'])}, plain loops "
                     f"{_ratio(other['expert'], ref['expert'])}; harness vs plain loops {_gap(other, ref)}")
        lines.append(f"{r} / {o} ({_variant(ref)}): harness {_ratio(ref['harness'], other['harness'])}, plain loops "
                     f"{_ratio(ref['expert'], other['expert'])}")
    return lines


def fairness_note(fairs: list[dict[str, Any]]) -> str:
    """:data:`NOTE`, and per file the model, device, CPU, rounds and load it was measured under."""
    where = []
    for f in fairs:
        env, settings = f.get("env") or {}, f.get("settings") or {}
        load = [env.get("load_start"), env.get("load_end")]
        loads = " -> ".join(f"{x[0]:.2f}" for x in load if isinstance(x, list) and x)
        where.append(f"{os.path.basename(f.get('path', ''))}: {f['model']} on {f['device']}"
                     + (f" ({env['cpu']})" if env.get("cpu") else "")
                     + (f", {settings['rounds']} round(s)" if settings.get("rounds") else "")
                     + (f", load {loads}" if loads else ""))
    return NOTE + (" Measured: " + "; ".join(where) + "." if where else "")


def fairness_table(fairs: list[dict[str, Any]], ok: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison: each backend's harness / plain loop, then per pair of backends the harness's and the
    plain loops' ratio, how far apart they are, and the report's own ratio for that pair on that device."""
    report = backend_ratios(ok) if not ok.empty else None
    rows = []
    for f in fairs:
        src = os.path.basename(f.get("path", "")) if len(fairs) > 1 else ""
        mine: list[dict[str, Any]] = []
        for e in f["backends"]:
            mine.append({"comparison": f"{e['backend']}: harness / plain loop", "precision": _variant(e),
                         "ratio": _ratio(e["harness"], e["expert"]),
                         "images/s (harness · plain loop)": f"{_images(e['harness'])} · {_images(e['expert'])}"})
        for other, ref in _pairs(f):
            pair, variant = f"{other['backend']} / {ref['backend']}", _variant(ref)
            mine += [{"comparison": f"{pair}: harness", "precision": variant,
                      "ratio": _ratio(other["harness"], ref["harness"])},
                     {"comparison": f"{pair}: plain loops", "precision": variant,
                      "ratio": _ratio(other["expert"], ref["expert"])},
                     {"comparison": f"{pair}: harness vs plain loops", "precision": variant, "ratio": _gap(other, ref)}]
            if report is not None and "images/s" in report:
                same = report[(report["backends"] == pair) & (report["device"] == f["device"])]
                mine += [{"comparison": f"{pair}: this report, {r['model']} on {r['device']}"
                          + ("" if r["variant"] == "-" else f", {r['variant']}"), "ratio": r["images/s"]}
                         for _, r in same.iterrows() if r["images/s"]]
        rows += [{**row, "fairness file": src} for row in mine]
    table = pd.DataFrame(rows).fillna("")
    return table.loc[:, (table != "").any()] if not table.empty else table
