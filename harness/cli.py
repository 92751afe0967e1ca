"""The ``harness`` command line.

Exit status: 0 success; 1 the run finished but a case failed; 2 bad input
(the message names the file, key or path; no traceback).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .config import DEVICES
from .errors import HarnessError

__all__ = ["main"]


def _cmd_run(args: argparse.Namespace) -> int:
    from .report import render_markdown
    from .results import RESULTS_FILE, read_records
    from .runner import resume_target, run_suite
    from .suite import load_suite, parse_set, select_cases

    suite = load_suite(args.suite, parse_set(args.set or []))
    if args.only:
        suite = select_cases(suite, args.only)
    if args.resume:
        root, run_id = resume_target(args.resume, suite)
        run_dir = run_suite(suite, root, run_id=run_id, quiet=args.quiet, resume=True)
    else:
        run_dir = run_suite(suite, args.results, run_id=args.run_id, quiet=args.quiet)
    records = read_records(run_dir / RESULTS_FILE)
    if not args.no_report:
        report = render_markdown(records, title=f"{suite.name} - {run_dir.name}")
        (run_dir / "report.md").write_text(report)
        print(report)
    print(f"results: {run_dir / RESULTS_FILE}", file=sys.stderr)
    last = {r["case"]: r["status"] for r in records}  # a resumed run: the newest record of each case counts
    return 1 if "failed" in last.values() else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import records_frame, render_markdown
    from .results import find_result_files, read_records

    records = [r for f in find_result_files(args.paths) for r in read_records(f)]
    if args.references:
        from .references import reference_records

        records += reference_records()
    if args.format == "csv":
        text = records_frame(records).to_csv(index=False)
    elif args.format == "json":
        text = records_frame(records).to_json(orient="records", indent=1) + "\n"
    else:
        charts = None
        if args.charts:
            base = Path(args.output).parent if args.output else Path.cwd()
            charts = (args.charts, os.path.relpath(Path(args.charts).resolve(), base.resolve()))
        text = render_markdown(records, charts=charts)
    if args.output:
        _write_output(args.output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _write_output(path: str, text: str) -> None:
    """Write an -o file (its folder made if missing); a failure is one line naming the path."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _probe_all() -> dict[str, dict]:
    from .plugins import backend_entry_points
    from .probe import probe_backend

    return {name: probe_backend(name) for name in sorted(backend_entry_points())}


def _cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .models import MODELS
    from .recipes import RECIPES, published_recipe

    probes = _probe_all()
    rows = []
    for name, spec in MODELS.items():
        usable = [b for b, p in probes.items() if name in p.get("models", ())]
        recipes = sorted({published_recipe(name, b) or "" for b in [*probes, "*"]} - {""})
        rows.append([name, f"{spec.params:,}" if spec.params else "", ", ".join(usable) or "none", ", ".join(recipes)])
    print("## Models\n")
    print(tabulate(rows, headers=["model", "params (224 px, 1000 classes)", "backends", "published recipes"],
                   tablefmt="github"))
    if args.recipes:
        print("\n## Recipes (`recipe: NAME` in a suite; `recipe: published` picks the model's own)\n")
        rows = []
        for r in RECIPES.values():
            per = "; ".join(f"{n} dev: batch {v['batch_size']}/dev, lr {v['lr']:g}"
                            for n, v in sorted({n: r.values(n) for n in (1, 8)}.items()))
            derived = f" (derived: {', '.join(map(str, r.derived))} dev)" if r.derived else ""
            s = r.settings
            rows.append([r.name, r.model, s.get("optimizer"), f"{s.get('schedule')}, {s.get('epochs')} epochs",
                         per + derived, ", ".join(r.backends) or "any", r.source])
        print(tabulate(rows, headers=["recipe", "model", "optimizer", "schedule", "batch and lr", "backends",
                                      "source"], tablefmt="github"))
    print("\n## Backends and devices on this machine\n")
    rows = []
    for name, p in probes.items():
        if "error" in p:
            rows.append([name, "", "", "unusable", p["error"]])
            continue
        for dev, st in p["device_status"].items():
            rows.append([name, f"{p['framework']} {p['framework_version']}", dev,
                         f"yes ({st.get('model')})" if st["available"] else "no", st.get("reason") or ""])
    print(tabulate(rows, headers=["backend", "framework", "device", "usable", "why not"], tablefmt="github"))
    return 0


def _cmd_check_backend(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .conformance import check_backend
    from .plugins import backend_entry_points
    from .errors import near

    eps = backend_entry_points()
    if args.name not in eps:
        raise HarnessError(f"unknown backend '{args.name}'{near(args.name, eps)} (installed: {', '.join(sorted(eps))})")
    results = check_backend(args.name, args.device, args.model, args.export_from, args.model_file)
    print(tabulate([[r["check"], r["status"], r["detail"]] for r in results], headers=["check", "status", "detail"],
                   tablefmt="github"))
    failed = [r for r in results if r["status"] == "fail"]
    counts = {k: sum(r["status"] == k for r in results) for k in ("pass", "fail", "skip")}
    print(f"\nbackend '{args.name}' on {args.device}: {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['skip']} skipped")
    return 1 if failed else 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .plugins import describe_entry_point

    rows = []
    for name, p in _probe_all().items():
        d = describe_entry_point(name)
        devices = ", ".join(k for k, v in p.get("device_status", {}).items() if v["available"])
        runtimes = ", ".join(p.get("runtimes") or {})
        scenarios = ", ".join(p.get("scenarios", ["train", "eval"])) if "error" not in p else ""
        rows.append([name, f"{p.get('version', '?')}", f"{d['package']} {d['package_version']}", d["module"],
                     p.get("error") or f"{p['framework']} {p['framework_version']}", devices,
                     scenarios + (f" (runtimes: {runtimes})" if runtimes else ""), ", ".join(p.get("models", []))])
    print(tabulate(rows, headers=["backend", "version", "package", "module", "framework", "devices found",
                                  "scenarios", "models"], tablefmt="github"))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import REGRESSIONS, compare_runs, render_comparison
    from .results import find_result_files, read_records

    runs = []
    for path in (args.baseline, args.current):
        records = [r for f in find_result_files([path]) for r in read_records(f) if r.get("kind", "measured") == "measured"]
        if not records:
            raise HarnessError(f"{path}: no measured records")
        runs.append(records)
    results = compare_runs(*runs, alpha=args.alpha, min_effect=args.min_effect, top1_tolerance=args.top1_tolerance)
    text = render_comparison(results, args.alpha, args.min_effect, args.top1_tolerance)
    if args.output:
        _write_output(args.output, text)
    print(text)
    return 1 if any(r.verdict in REGRESSIONS for r in results) else 0


def _cmd_references(args: argparse.Namespace) -> int:
    import json

    from .references import reference_records

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reference_records())
    if args.output:
        _write_output(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_tiny(args: argparse.Namespace) -> int:
    from .tinydata import make_tiny_dataset

    root = make_tiny_dataset(args.folder, classes=args.classes, train_per_class=args.train_per_class,
                             val_per_class=args.val_per_class, size=args.size, seed=args.seed)
    print(root)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    out = convert(args.src, args.dst, model=args.model, src_backend=args.src_backend, dst_backend=args.dst_backend,
                  width=args.width, num_classes=args.num_classes, image_size=args.image_size)
    print(f"{out['src']} ({out['from']}) -> {out['written']} ({out['to']}): {out['tensors']} tensors, "
          f"checked against {out['model']}")
    return 0


def _cmd_parity(args: argparse.Namespace) -> int:
    from .parity import UPDATE_REL_TOL, compare

    r = compare(args.model, args.backends[0], args.backends[1], width=args.width, image_size=args.image_size)
    ok = (r.logits_max_abs <= args.tol and r.loss_abs <= args.tol and r.running_stats_max_abs <= args.tol
          and r.update_rel_max <= UPDATE_REL_TOL)
    print(f"{args.model}: {args.backends[0]} vs {args.backends[1]}: logits max |diff| {r.logits_max_abs:.2e}, "
          f"loss |diff| {r.loss_abs:.2e}, BN running stats max |diff| {r.running_stats_max_abs:.2e}, "
          f"weights after one step max |diff| {r.weights_max_abs:.2e} ({r.worst_weight}), "
          f"update relative diff {r.update_rel_max:.1e} "
          f"-> {'same function' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a suite, one process per case")
    p.add_argument("suite", help="suite YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting in every case")
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--run-id", help="name of the run folder (default: a timestamp)")
    p.add_argument("--only", action="append", metavar="PATTERN",
                   help="run only cases whose name matches this glob (e.g. '*multigrain*'); repeatable")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an earlier run of this suite: cases done there (same settings, ok or skipped) "
                        "are not run again; failed, unfinished and changed ones are")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="markdown tables from result files or run folders")
    p.add_argument("paths", nargs="+", help="results.jsonl files or folders holding them")
    p.add_argument("-o", "--output", help="write the report here instead of stdout")
    p.add_argument("--references", action="store_true",
                   help="put the seeds' published numbers (reference records) beside the measured ones")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md",
                   help="markdown report (default), or the flat table of every record as CSV or JSON")
    p.add_argument("--charts", metavar="DIR", help="also draw PNG throughput charts into DIR, linked from the report")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("compare", help="regression check of CURRENT against BASELINE (exit 0 none, 1 regression, "
                                       "2 usage or input error)")
    p.add_argument("baseline", help="baseline run folder or results.jsonl")
    p.add_argument("current", help="current run folder or results.jsonl")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the Mann-Whitney U test")
    p.add_argument("--min-effect", type=float, default=0.10,
                   help="smallest relative growth of the median step time that counts (default 0.10 = 10%%)")
    p.add_argument("--top1-tolerance", type=float, default=1.0, help="top-1 points that may be lost (default 1.0)")
    p.add_argument("-o", "--output", help="also write the markdown summary here")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("references", help="write the seeds' published numbers as reference records (JSON Lines)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(func=_cmd_references)

    p = sub.add_parser("list", help="models, backends and the devices usable on this machine")
    p.add_argument("--recipes", action="store_true", help="also list the published training recipes")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("plugins", help="installed backends: package, version, devices, models")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("check-backend", help="the conformance suite: check every hook of an installed backend "
                       "(exit 0 all passed, 1 a check failed, 2 usage error)")
    p.add_argument("name", help="the backend's entry-point name (harness plugins)")
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--model", default=None, help="model to build (default: the backend's first)")
    p.add_argument("--export-from", default="torch", help="for a backend that only loads exports: the backend "
                   "that makes them (default torch)")
    p.add_argument("--model-file", default=None, help="for a backend that only loads exports: an exported file "
                   "to load instead ('{batch}' is replaced by the batch size)")
    p.set_defaults(func=_cmd_check_backend)

    p = sub.add_parser("convert", help="convert a checkpoint between backends, checked against the model")
    p.add_argument("src", help="checkpoint to read (.pt/.pth: torch, .ckpt: mindspore)")
    p.add_argument("dst", help="checkpoint to write")
    p.add_argument("--model", required=True)
    p.add_argument("--from", dest="src_backend", help="backend of SRC (default: from its suffix)")
    p.add_argument("--to", dest="dst_backend", help="backend of DST (default: from its suffix)")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=224)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("parity", help="do two backends compute the same function from the same weights?")
    p.add_argument("model")
    p.add_argument("--backends", nargs=2, default=["torch", "mindspore"], metavar=("REFERENCE", "OTHER"))
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--tol", type=float, default=1e-4)
    p.set_defaults(func=_cmd_parity)

    p = sub.add_parser("make-tiny-data", help="write the tiny learnable ImageNet-layout JPEG dataset")
    p.add_argument("folder")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=32)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_tiny)
    return parser


def _terminate(signum: int, frame: object) -> None:
    # A case runs in its own session (so a Ctrl-C aimed at harness does not tear it mid-record);
    # turning SIGTERM/SIGHUP into KeyboardInterrupt lets the runner stop that case's process group.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; records already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
