"""Measure the regression gate on this machine: false alarms and caught slowdowns.

For each of ``--pairs`` rounds it runs the suite (a baseline), runs it again with the same code (``harness compare``
must not fire: a false alarm when it does) and once more with a 30% slowdown injected inside every timed step
(``HARNESS_GATE_SLOWDOWN``; the gate must fire: caught). Exit 2 from the gate (a case it could not judge, e.g.
unstable) is counted apart. Goals: false alarms <= 1 of 10, caught >= 9 of 10. Not a test: it takes a while and its
figures belong in a note, with the machine and the load it ran under.

With ``--interleave K`` each round measures K repetitions of each of the three, alternately (base, same, slow, then
slow, same, base, ...), each a run of its own, and judges them with ``harness compare --paired``: noise that lasts
minutes hits the three alike. That is how a CI job compares two checkouts on a shared runner.

    python benchmarks/gate/run.py --pairs 10 --suite suites/ci_small.yaml
    python benchmarks/gate/run.py --pairs 3 --suite suites/ci_small.yaml --only 'gluon*' --set repeats=3
    # meets the goals on a 2-core VM:
    python benchmarks/gate/run.py --pairs 10 --suite suites/ci_small.yaml --only 'gluon*' --interleave 5
    # the gate for inference: latency p50 and p99 at batch 1, throughput at batch 8 (the p99 needs repetitions);
    # one intra-op thread: two threads on a 2-core VM made batch-1 latency two-state (docs/compare.md)
    python benchmarks/gate/run.py --scenario inference --pairs 10 --only 'gluon*torch*' --interleave 5 --set threads=1

Besides the gate's exit status per round, each metric's verdicts are counted (from ``harness compare --json``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli.main", *args], capture_output=True, check=False,
                          text=True, env={**os.environ, **(env or {})}, cwd=REPO)


def run(suite: str, results: Path, run_id: str, extra: list[str], slowdown: float = 0.0) -> Path:
    out = harness("run", suite, "--results", str(results), "--run-id", run_id, "--quiet", "--no-report", *extra,
                  env={"HARNESS_GATE_SLOWDOWN": str(slowdown)} if slowdown else None)
    if out.returncode not in (0, 1):
        sys.exit(f"gate benchmark: harness run failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    return next(results.glob(f"*/{run_id}"))


def interleaved(suite: str, results: Path, extra: list[str], slowdown: float, k: int) -> tuple[Path, Path, Path]:
    """``k`` repetitions each of base, same and slow, measured alternately; each side's runs in a folder of its own
    (``harness compare`` reads a folder of runs as repetitions)."""
    sides = {"base": 0.0, "same": 0.0, "slow": slowdown}
    for rep in range(k):
        for side in (list(sides) if rep % 2 == 0 else list(sides)[::-1]):
            run(suite, results / side, f"r{rep}", extra, sides[side])
    return results / "base", results / "same", results / "slow"


def _regressed(verdict: Path) -> set[str]:
    """The metrics a ``harness compare --json`` verdict found worse in some case."""
    if not verdict.is_file():
        return set()
    rows = json.loads(verdict.read_text())["rows"]
    return {r["metric"] for r in rows if r["verdict"] == "regression" and r["metric"]}


def judge(pairs: list[tuple[Path, Path, Path]], min_effect: float, alpha: float, paired: bool,
          metrics: list[str]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The gate's verdicts on every round at one ``--min-effect`` and ``--alpha``: same code (base vs same) and slowed
    (base vs slow). Exit 1 from the gate: it fired; exit 2: it could not judge (an unstable case, or too few
    samples). Per metric: the rounds in which it fired on the same code and on the slowed one."""
    counts = {"false alarm": 0, "same: unjudgeable": 0, "caught": 0, "slow: unjudgeable": 0}
    per_metric: dict[str, dict[str, int]] = {}
    options = ["--min-effect", str(min_effect), "--alpha", str(alpha)] + (["--paired"] if paired else [])
    options += ["--metrics", ",".join(metrics)] if metrics else []
    for base, same, slow in pairs:
        rc = {}
        for side, path in (("same", same), ("slow", slow)):
            verdict = path.parent / f"{path.name}-verdict.json"
            rc[side] = harness("compare", str(base), str(path), *options, "--json", str(verdict)).returncode
            for m in _regressed(verdict):
                per_metric.setdefault(m, {"same": 0, "slow": 0})[side] += 1
        counts["false alarm"] += rc["same"] == 1
        counts["same: unjudgeable"] += rc["same"] == 2
        counts["caught"] += rc["slow"] == 1
        counts["slow: unjudgeable"] += rc["slow"] == 2
    return counts, per_metric


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--suite", default="suites/ci_small.yaml")
    p.add_argument("--only", action="append", default=[], help="case glob (harness run --only)")
    p.add_argument("--set", action="append", default=[], help="setting override (harness run --set)")
    p.add_argument("--slowdown", type=float, default=0.3)
    p.add_argument("--min-effect", type=float, action="append", default=[],
                   help="gate thresholds to judge the same runs at (default: the gate's default, then 0.2 and 0.3)")
    p.add_argument("--alpha", type=float, action="append", default=[],
                   help="significance levels to judge the same runs at (default: the gate's default)")
    p.add_argument("--interleave", type=int, default=0, metavar="K",
                   help="K alternately measured repetitions of base, same and slow per round, judged in pairs")
    p.add_argument("--scenario", choices=("train", "inference"), default="train",
                   help="inference: the suite's cases as inference runs at batch 1 and 8 on synthetic data, gated on "
                        "latency_p50, latency_p99 and inference_b8")
    p.add_argument("--keep", type=Path, help="keep the runs' results under this folder (default: a temporary one)")
    args = p.parse_args()
    sets = args.set + (["scenario=inference", "inference_batch_sizes=[1, 8]", "data=synthetic"]
                       if args.scenario == "inference" else [])
    metrics = ["latency_p50", "latency_p99", "inference_b8"] if args.scenario == "inference" else []
    extra = [a for o in args.only for a in ("--only", o)] + [a for s in sets for a in ("--set", s)]
    sys.path.insert(0, str(REPO))
    from harness.results.compare import ALPHA, MIN_EFFECT

    thresholds = args.min_effect or [MIN_EFFECT, 0.2, 0.3]
    alphas = args.alpha or [ALPHA]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="harness-gate-") as tmp:
        results = args.keep or Path(tmp)
        pairs = []
        for i in range(args.pairs):
            if args.interleave:
                pairs.append(interleaved(args.suite, results / f"round{i}", extra, args.slowdown, args.interleave))
            else:
                pairs.append((run(args.suite, results, f"base{i}", extra), run(args.suite, results, f"same{i}", extra),
                              run(args.suite, results, f"slow{i}", extra, args.slowdown)))
            print(f"round {i + 1}/{args.pairs} measured ({time.monotonic() - start:.0f} s)", flush=True)
        n = args.pairs
        how = f", {args.interleave} alternate repetitions each, judged in pairs" if args.interleave else ""
        print(f"\n{n} rounds of {args.suite} {' '.join(extra)}: base, same code, {args.slowdown:.0%} slower{how}\n")
        for t, a in ((t, a) for a in alphas for t in thresholds):
            c, per_metric = judge(pairs, t, a, bool(args.interleave), metrics)
            print(f"--alpha {a:g} --min-effect {t:g}: false alarms {c['false alarm']} of {n} (goal <= {n // 10}); "
                  f"caught {c['caught']} of {n} (goal >= {n - n // 10}); not judged (unstable): "
                  f"{c['same: unjudgeable']} same-code, {c['slow: unjudgeable']} slowed", flush=True)
            for m, k in sorted(per_metric.items()):
                print(f"    {m}: fired on the same code in {k['same']} of {n}, on the slowed code in "
                      f"{k['slow']} of {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
