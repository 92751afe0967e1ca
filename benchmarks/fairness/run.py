"""Fairness: each backend through `harness run` against a plain loop written the way its framework's own examples
write it, and the cross-framework ratio each way of measuring gives.

For each backend (``--backends``), ``--rounds`` times, alternately and each in a fresh process: `harness run` of a
generated one-case suite (gluon_resnet50_v1b, synthetic data, SGD with Nesterov momentum 0.9, weight decay 1e-4 on
every parameter, label smoothing 0.1, the same warm-up and timed steps) and that framework's expert loop
(``torch_expert.py``, ``mindspore_expert.py``: their docstrings say how each is written) with the same shapes.
``--bf16 --channels-last`` make the torch side (both of its loops) bf16 autocast in NHWC; MindSpore stays fp32 (its
CPU convolutions are fp32 only), and backends are paired only at the same precision. It prints per backend
harness / expert with the 95% interval over the rounds, and per pair the cross-framework ratio both ways through
harness and through the plain loops, with how far apart they are (:mod:`harness.results.fairness`); with the CPU
model and the load average at the start and the end. ``--out FILE.json`` keeps it all for
``harness report RUN --fairness FILE.json``.

    python benchmarks/fairness/run.py --out fairness-fp32.json                      # full size, both, 3 rounds
    python benchmarks/fairness/run.py --backends torch --bf16 --channels-last --out fairness-bf16.json
    python benchmarks/fairness/run.py --width 0.25 --image-size 64 --batch-size 8 --steps 3 --warmup 1 --rounds 1
    python benchmarks/fairness/run.py --device gpu --backends torch --batch-size 64  # lent hardware

Not a test: at full size on 2 CPU cores a round takes minutes. Run it on an otherwise idle machine.
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
from typing import Any

from harness.backends.child import child_env
from harness.config import DEVICES
from harness.errors import one_line
from harness.measure.environment import host_environment
from harness.results.fairness import SCHEMA, check_fairness, summary_lines

HERE = Path(__file__).resolve().parent
MODEL = "gluon_resnet50_v1b"
EXPERTS = {"torch": HERE / "torch_expert.py", "mindspore": HERE / "mindspore_expert.py"}


def variant(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """The precision and memory format ``backend`` runs at: the torch options apply to torch only."""
    if backend == "torch":
        return {"precision": "bf16" if args.bf16 else "fp32", "channels_last": args.channels_last}
    return {"precision": "fp32", "channels_last": False}


def _fail(what: str, out: subprocess.CompletedProcess[str]) -> SystemExit:
    tail = ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1]
    return SystemExit(f"fairness: {what} failed (exit {out.returncode}): {one_line(tail, 400)}")


def expert(args: argparse.Namespace, backend: str, cwd: str) -> dict[str, Any]:
    """One run of ``backend``'s expert loop: its JSON line."""
    v = variant(args, backend)
    cmd = [sys.executable, str(EXPERTS[backend]), "--device", args.device, "--width", str(args.width),
           "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
           "--num-classes", str(args.num_classes), "--warmup", str(args.warmup), "--steps", str(args.steps),
           *(["--threads", str(args.threads)] if args.threads else []),
           *(["--bf16"] if v["precision"] == "bf16" else []), *(["--channels-last"] if v["channels_last"] else []),
           *(["--loop", args.mindspore_loop, "--pad-mode", args.mindspore_pad_mode, "--jit-level",
              args.mindspore_jit_level] if backend == "mindspore" else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=child_env(),
                         timeout=args.timeout, stdin=subprocess.DEVNULL)  # MindSpore writes into its folder
    if out.returncode:
        raise _fail(f"the {backend} expert loop", out)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def harness(args: argparse.Namespace, backend: str, work: Path, run_id: str) -> dict[str, Any]:
    """One `harness run` of the one-case suite: its record."""
    suite = work / f"{run_id}.yaml"
    suite.write_text(json.dumps({
        "name": "fairness", "models": [MODEL], "backends": [backend], "devices": [args.device],
        "settings": {"width": args.width, "image_size": args.image_size, "batch_size": args.batch_size,
                     "num_classes": args.num_classes, "warmup": args.warmup, "steps": args.steps,
                     "data": "synthetic", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                     "weight_decay": 1e-4, "weight_decay_on": "all", "label_smoothing": 0.1, "eval": False,
                     "threads": args.threads, "timeout": args.timeout, **variant(args, backend),
                     **({"jit_level": args.mindspore_jit_level} if backend == "mindspore" else {})},
    }))  # JSON is YAML
    out = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", str(suite), "--results", str(work),
                          "--run-id", run_id, "--quiet", "--no-report"], capture_output=True, text=True, check=False,
                         cwd=work, env=child_env(), stdin=subprocess.DEVNULL)
    if out.returncode:
        raise _fail(f"harness run ({backend})", out)
    rec: dict[str, Any] = json.loads((work / "fairness" / run_id / "results.jsonl").read_text().splitlines()[-1])
    if rec["status"] != "ok":
        raise SystemExit(f"fairness: the harness case on {backend} {rec['status']}: {rec.get('reason')}")
    return rec


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Every round: each backend's two sides, the order flipped every other round, each in a fresh process."""
    entries = {b: {"backend": b, **variant(args, b), "harness": [], "expert": [], "expert_detail": {},
                   "harness_detail": {}} for b in args.backends}
    for i in range(args.rounds):
        for b, e in entries.items():
            sides = ["expert", "harness"] if i % 2 == 0 else ["harness", "expert"]
            for side in sides:
                t0 = time.monotonic()
                if side == "expert":
                    got = expert(args, b, tempfile.mkdtemp(dir=work))
                    e["expert"].append(got["images_per_s"])
                    e["expert_detail"] = {k: v for k, v in got.items() if k not in ("step_s", "images_per_s")}
                else:
                    rec = harness(args, b, work, f"r{i}-{b}")
                    e["harness"].append(rec["metrics"]["train"]["images_per_s"])
                    env, settings = rec.get("env") or {}, rec["config"].get("settings") or {}
                    e["harness_detail"] = {"case": rec["case"], "framework_version": env.get("framework_version"),
                                           "threads": (env.get("threads_set") or {}).get("threads"),
                                           "onednn_max_cpu_isa": env.get("onednn_max_cpu_isa"),
                                           "jit_level": env.get("mindspore_jit_level"),
                                           **{k: settings.get(k) for k in ("precision", "channels_last", "nesterov",
                                                                           "weight_decay_on", "label_smoothing")}}
                print(f"round {i + 1}/{args.rounds} {b:>9} {side:>7}: {e[side][-1]:8.2f} img/s "
                      f"({time.monotonic() - t0:.0f} s)", flush=True)
    return list(entries.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="torch,mindspore", help="comma-separated (default torch,mindspore)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every side (default: each "
                   "framework's choice in the expert loops, harness's rule in harness)")
    p.add_argument("--bf16", action="store_true", help="torch: bf16 autocast on both torch sides")
    p.add_argument("--channels-last", action="store_true", help="torch: NHWC on both torch sides")
    p.add_argument("--mindspore-loop", choices=("cell", "model"), default="cell",
                   help="the MindSpore expert: TrainOneStepCell in a loop, or Model.train over a dataset")
    p.add_argument("--mindspore-pad-mode", choices=("same", "pad"), default="same",
                   help="the MindSpore expert's convolution padding (same: the ModelZoo's)")
    p.add_argument("--mindspore-jit-level", choices=("O0", "O1"), default="O0",
                   help="MindSpore's graph compile level on both MindSpore sides (default O0, the backend's CPU "
                        "default; the zoo's scripts set none, and MindSpore's unset choice trains slower on CPU)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds for each process")
    p.add_argument("--out", type=Path, help="write the whole result here as JSON (harness report --fairness)")
    args = p.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backends if b not in EXPERTS]
    if unknown or not args.backends:
        p.error(f"--backends: {', '.join(unknown) or 'none given'}; choose from {', '.join(EXPERTS)}")
    start = time.monotonic()
    load_start = list(os.getloadavg())
    env = host_environment()
    print(f"{env['cpu']}, {env['cpu_count']} CPUs; load average {load_start[0]:.2f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="harness-fairness-") as tmp:
        entries = measure(args, Path(tmp))
    result = check_fairness({
        "schema": SCHEMA, "model": MODEL, "device": args.device,
        "settings": {k: getattr(args, k) for k in ("width", "image_size", "batch_size", "num_classes", "warmup",
                                                   "steps", "threads", "rounds", "bf16", "channels_last",
                                                   "mindspore_loop", "mindspore_pad_mode", "mindspore_jit_level")},
        "env": {**env, "load_start": load_start, "load_end": list(os.getloadavg()),
                "seconds": round(time.monotonic() - start)},
        "backends": entries}, "this run")
    print(f"\n{MODEL} on {args.device}, width {args.width}, {args.image_size} px, batch {args.batch_size}, "
          f"{args.warmup} + {args.steps} steps, {args.rounds} round(s); load average {load_start[0]:.2f} -> "
          f"{result['env']['load_end'][0]:.2f}; geometric means with 95% intervals over the rounds, ratios paired by "
          "round")
    for line in summary_lines(result):
        print(line)
    if (args.bf16 or args.channels_last) and "mindspore" in args.backends:
        print("(MindSpore ran fp32: it is paired with no torch variant in bf16 or channels-last)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"written: {args.out} (harness report RUN --fairness {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
