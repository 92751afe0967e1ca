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

from harness import __version__
from harness.cli.contract import add_parsers as add_contract_parsers
from harness.cli.gate import add_parsers as add_gate_parsers
from harness.cli.inspect import (
    _cmd_check_backend,
    _cmd_convert,
    _cmd_data,
    _cmd_doctor,
    _cmd_list,
    _cmd_plugins,
    _cmd_references,
    _cmd_tiny,
    _write_output,
    add_parity_parser,
)
from harness.config import DEVICES, VERIFY_LEVELS, Settings
from harness.errors import HarnessError, one_line

__all__ = ["main"]


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.results.records import RESULTS_FILE, read_records
    from harness.results.report import answer_lines, render_markdown
    from harness.run.runner import resume_target, run_suite
    from harness.run.suite import load_suite, parse_set, select_cases

    suite = load_suite(args.suite, parse_set(args.set or []))
    if args.only:
        suite = select_cases(suite, args.only)
    if args.resume:
        run_dir = run_suite(suite, args.results, quiet=args.quiet, resume=True,
                            run_dir=resume_target(args.resume, suite), on=args.on)
    else:
        run_dir = run_suite(suite, args.results, run_id=args.run_id, quiet=args.quiet, on=args.on)
    records = read_records(run_dir / RESULTS_FILE)
    if not args.no_report:
        report = render_markdown(records, title=f"{suite.name} - {run_dir.name}")
        (run_dir / "report.md").write_text(report)
        print(report)
    print(f"results: {run_dir / RESULTS_FILE}", file=sys.stderr)
    for line in answer_lines(records):  # the answer in one sentence per model and device, last on the terminal
        print(line, file=sys.stderr)
    last = {r["case"]: r["status"] for r in records}  # a resumed run: the newest record of each case counts
    return 1 if "failed" in last.values() else 0


#: ``harness report --format``: the markdown report, the flat table of every record, or the self-contained HTML report.
REPORT_FORMATS = ("md", "csv", "json", "html")


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.errors import near
    from harness.results.equivalence import check_margin
    from harness.results.fairness import read_fairness
    from harness.results.frame import records_frame
    from harness.results.records import find_result_files, read_records
    from harness.results.report import render_markdown

    if args.format not in REPORT_FORMATS:
        raise HarnessError(f"--format {args.format}: unknown format (one of {', '.join(REPORT_FORMATS)})"
                           f"{near(args.format, REPORT_FORMATS)}")
    if args.format == "html" and not args.output:
        raise HarnessError("--format html writes one self-contained file: give it with -o FILE (e.g. -o report.html)")
    if args.format == "html" and args.charts:
        raise HarnessError("--charts draws PNGs for the markdown report: the HTML report has its charts inside")
    margin = check_margin(args.margin)
    if args.fairness and args.format in ("csv", "json"):
        raise HarnessError(f"--fairness adds a section to the markdown and HTML reports, not to --format {args.format}")
    fairness = [read_fairness(f) for f in args.fairness or []]
    records = [r for f in find_result_files(args.paths) for r in read_records(f)]
    if args.references:
        from harness.results.references import reference_records

        records += reference_records()
    if args.format == "csv":
        text = records_frame(records).to_csv(index=False)
    elif args.format == "json":
        text = records_frame(records).to_json(orient="records", indent=1) + "\n"
    elif args.format == "html":
        from harness.results.html import render_html
        from harness.results.trajectories import find_trajectories

        text = render_html(records, margin=margin, trajectories=find_trajectories(args.paths), fairness=fairness)
    else:
        charts = None
        if args.charts:
            base = Path(args.output).parent if args.output else Path.cwd()
            charts = (args.charts, os.path.relpath(Path(args.charts).resolve(), base.resolve()))
        text = render_markdown(records, charts=charts, margin=margin, fairness=fairness)
    if args.output:
        _write_output(args.output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


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
    p.add_argument("--on", metavar="EXECUTOR",
                   help="where the cases run: local (default: one after another here) or slurm (each case a Slurm "
                        "job, as the suite's cluster: section asks; docs/cluster.md); a resumed run keeps its own")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="the report of result files or run folders: markdown tables (default), a "
                                      "self-contained HTML page with charts, or the flat table as CSV/JSON")
    p.add_argument("paths", nargs="+", help="results.jsonl files or folders holding them")
    p.add_argument("-o", "--output", help="write the report here instead of stdout")
    p.add_argument("--references", action="store_true",
                   help="put the seeds' published numbers (reference records) beside the measured ones")
    p.add_argument("--format", default="md", metavar="|".join(REPORT_FORMATS),
                   help="markdown report (default), the flat table of every record as CSV or JSON, or one "
                        "self-contained HTML file with interactive charts that opens offline (needs -o FILE)")
    p.add_argument("--charts", metavar="DIR", help="also draw PNG throughput charts into DIR, linked from the report")
    p.add_argument("--margin", type=float, help="top-1 points inside which backends' accuracy over seeds counts as "
                                                "equivalent (default 1.0)")
    p.add_argument("--fairness", action="append", metavar="FILE.json", help="a result of benchmarks/fairness/run.py "
                   "--out: adds 'How fair are the ratios' (harness / plain loop per backend); repeatable")
    p.set_defaults(func=_cmd_report)

    add_gate_parsers(sub)

    p = sub.add_parser("references", help="write the seeds' published numbers as reference records (JSON Lines)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(func=_cmd_references)

    p = sub.add_parser("doctor", help="check this host before a benchmark: other busy processes, load, CPU "
                       "governor and boost, memory and swap, thread settings, NVIDIA (NVML) and Ascend (npu-smi); "
                       "exit 0 fit, 1 unfit")
    p.add_argument("--interval", type=float, default=1.0, help="seconds to watch for busy processes (default 1)")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("list", help="models, backends and the devices usable on this machine")
    p.add_argument("--recipes", action="store_true", help="also list the published training recipes")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("flops", help="analytic GMACs and training GFLOPs per image of every model variant, and the "
                       "device peak table MFU is computed against")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--image-size", type=int, default=224)
    p.set_defaults(func=_cmd_flops)
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
    p.add_argument("--golden-only", action="store_true", help="only whether it computes the right network (the "
                   "golden checks against the NumPy reference), not every hook's contract")
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

    add_parity_parser(sub)
    add_contract_parsers(sub)

    p = sub.add_parser("make-tiny-data", help="write the tiny learnable ImageNet-layout JPEG dataset")
    p.add_argument("folder")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=32)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_tiny)

    p = sub.add_parser("data", help="dataset manifests: `scan DIR` builds or updates them (one scan, reused by every "
                                    "case and rank), `info DIR` shows what they hold")
    p.add_argument("action", choices=("scan", "info"))
    p.add_argument("folder", help="an ImageNet-layout folder: DIR/train/<class>/<images>, DIR/val/...")
    p.add_argument("--verify", choices=VERIFY_LEVELS, default=Settings.verify,
                   help=f"how each image is checked (default: {Settings.verify})")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("history", help="every run of each case under a results folder: throughput, top-1, status, "
                                       "versions and date (an SQLite index over the runs' JSON Lines)")
    p.add_argument("case_glob", nargs="?", metavar="CASE_GLOB", help="only cases whose name matches this glob")
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.set_defaults(func=_cmd_history)

    p = sub.add_parser("export", help="export a run in another format: `mllog RUN_DIR` writes MLPerf logging "
                                      "(:::MLLOG) events, one file per case")
    p.add_argument("format", choices=("mllog",))
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (or its results.jsonl)")
    p.add_argument("-o", "--output", metavar="DIR", help="folder for the files (default: RUN_DIR/mllog)")
    p.set_defaults(func=_cmd_export)
    return parser


def _cmd_flops(args: argparse.Namespace) -> int:
    from harness.models.flops import main as flops_main

    return flops_main(args)


def _cmd_history(args: argparse.Namespace) -> int:
    from harness.results.history import history_frame, render_history

    sys.stdout.write(render_history(history_frame(args.results, args.case_glob)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from harness.results.mllog import export_mllog

    written = export_mllog(args.run_dir, args.output)
    print(f"harness: wrote {len(written)} MLPerf log(s) to {written[0].parent}", file=sys.stderr)
    return 0


def _terminate(signum: int, frame: object) -> None:
    # A case runs in its own session (so a Ctrl-C aimed at harness does not tear it mid-record);
    # turning SIGTERM/SIGHUP into KeyboardInterrupt lets the runner stop that case's process group.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        rc: int = args.func(args)
        return rc
    except HarnessError as exc:
        print(f"harness: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; records already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
