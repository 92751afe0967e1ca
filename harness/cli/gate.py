"""``harness compare`` (the gate) and ``harness baseline`` (named baselines for it)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli.inspect import _write_output
from harness.errors import HarnessError

__all__ = ["add_parsers"]


def _records(path: str) -> list[dict[str, Any]]:
    from harness.results.records import find_result_files, read_records

    records = [r for f in find_result_files([path]) for r in read_records(f) if r.get("kind", "measured") == "measured"]
    if not records:
        raise HarnessError(f"{path}: no measured records")
    return records


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.results.baselines import baseline_path, host_differences
    from harness.results.compare import REGRESSIONS, UNJUDGEABLE, compare_runs
    from harness.results.compare_report import comparison_json, render_comparison
    from harness.results.equivalence import check_margin, runs_equivalence

    margin = check_margin(args.margin)
    if len(args.runs) != (1 if args.baseline else 2):
        raise HarnessError("compare: give BASELINE and CURRENT, or --baseline NAME and CURRENT")
    paths = [str(baseline_path(args.baseline, args.store)), args.runs[0]] if args.baseline else args.runs
    runs = [_records(p) for p in paths]
    hosts = host_differences(*runs)
    if hosts and not args.allow_different_host:
        raise HarnessError(f"{hosts[0]}: measured on different hosts, so a change may be the machine's "
                           f"(--allow-different-host to compare them anyway)")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    options = {"alpha": args.alpha, "min_effect": args.min_effect, "top1_tolerance": args.top1_tolerance,
               "memory_tolerance": args.memory_tolerance, "paired": args.paired, "metrics": metrics,
               "only": args.only}
    results = compare_runs(runs[0], runs[1], allow_different_settings=args.allow_different_settings, margin=margin,
                           **options)
    text = render_comparison(results, args.alpha, args.min_effect, args.top1_tolerance,
                             runs_equivalence(runs[0], runs[1], margin), args.memory_tolerance)
    if hosts:
        text = text.replace("\n\n", "\n\n**Measured on different hosts** (--allow-different-host): "
                            + "; ".join(hosts) + "\n\n", 1)
    if args.output:
        _write_output(args.output, text)
    if args.json:
        _write_output(args.json, json.dumps(comparison_json(results, {**options, "baseline": paths[0],
                                                                      "current": paths[1]}), indent=1))
    print(text)
    if any(r.verdict in REGRESSIONS for r in results):
        return 1
    unjudged = [r for r in results if r.verdict in UNJUDGEABLE]
    if unjudged:
        print(f"harness: error: {len(unjudged)} case(s) cannot be judged (unstable): {unjudged[0].case}: "
              f"{unjudged[0].why}", file=sys.stderr)
        return 2
    asked = [r for r in results if metrics and r.verdict == "not judged"]
    if asked and not any(r.metric == asked[0].metric and r.verdict != "not judged" for r in results):
        print(f"harness: error: --metrics {asked[0].metric}: no case could be judged on it: {asked[0].why}",
              file=sys.stderr)
        return 2
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from harness.results.baselines import baseline_path, save_baseline

    if args.action == "save":
        folder = save_baseline(args.run, args.name, args.store, args.replace)
        print(f"baseline '{args.name}' saved: {folder} (harness compare --baseline {args.name} CURRENT)")
    else:
        print(baseline_path(args.name, args.store).parent)
    return 0


def add_parsers(sub: Any) -> None:
    """``compare`` and ``baseline``."""
    p = sub.add_parser("compare", help="the gate: CURRENT against BASELINE, every metric the cases measured (exit 0 "
                                       "no regression, 1 regression, 2 usage or input error, or cannot judge)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="BASELINE CURRENT (run folders or results.jsonl; a folder "
                   "of run folders: each run is a repetition); with --baseline NAME, only CURRENT")
    p.add_argument("--baseline", metavar="NAME", help="compare against the baseline saved under this name")
    p.add_argument("--store", help="where baselines live (default $HARNESS_BASELINES, else ./baselines)")
    p.add_argument("--metrics", help="comma-separated metrics to gate (default: every metric a case measured): "
                   "train, eval, inference_b<N>, latency_p50, latency_p99, data_w<N>, time_to_accuracy, energy, "
                   "memory_host, memory_device, top1, top1_seeds, export_top1")
    p.add_argument("--only", action="append", metavar="GLOB", help="compare only cases whose name matches; "
                   "repeatable")
    p.add_argument("--paired", action="store_true",
                   help="the two sides were measured alternately (baseline, current, baseline, ...): judge the ratio "
                        "of each pair of repetitions, so noise that lasts minutes cancels (3 pairs or more)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the test (default 0.01)")
    p.add_argument("--min-effect", type=float, default=0.10,
                   help="smallest relative growth of a time or run metric that counts (default 0.10 = 10%%)")
    p.add_argument("--top1-tolerance", type=float, default=1.0, help="top-1 points that may be lost (default 1.0)")
    p.add_argument("--memory-tolerance", type=float, default=0.10,
                   help="relative growth of peak memory that is allowed (default 0.10 = 10%%)")
    p.add_argument("--allow-different-settings", action="store_true",
                   help="an A/B comparison: compare cases whose settings differ (every difference is listed; time "
                        "is compared per image across batch sizes)")
    p.add_argument("--allow-different-host", action="store_true",
                   help="compare runs measured on another CPU model, device model or framework version")
    p.add_argument("--margin", type=float, help="top-1 points inside which the two runs' accuracy over seeds counts "
                                                "as equivalent (default 1.0; shown, not gated)")
    p.add_argument("-o", "--output", help="also write the markdown verdict here")
    p.add_argument("--json", metavar="FILE", help="also write the verdict as JSON here (schema harness.compare/1)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("baseline", help="named baselines for the gate: save a run as one, or print where one is")
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = act.add_parser("save", help="store RUN's records as baseline NAME (refreshing one is explicit: --replace)")
    s.add_argument("run", metavar="RUN", help="a run folder (or a folder of them, or a results.jsonl)")
    s.add_argument("--name", default="main", help="the baseline's name (default main)")
    s.add_argument("--replace", action="store_true", help="refresh an existing baseline of that name")
    s.add_argument("--store", help="where baselines live (default $HARNESS_BASELINES, else ./baselines)")
    s = act.add_parser("path", help="print baseline NAME's folder")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--store", help="where baselines live (default $HARNESS_BASELINES, else ./baselines)")
    p.set_defaults(func=_cmd_baseline)
