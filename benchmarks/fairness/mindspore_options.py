"""MindSpore's CPU options side by side on harness's ResNet-50: the graph compile level, or oneDNN's ISA cap.

``--vary jit_level`` (the default) compares unset (MindSpore's own choice), O0 and O1; ``--vary onednn_isa``
compares values of ``ONEDNN_MAX_CPU_ISA`` (``--isas``; default AVX2, AVX512_CORE and ALL, oneDNN's name for no cap)
with the level at O0. Each round trains the same GRAPH-mode ``TrainOneStepCell`` (harness's MindSpore model,
cross-entropy with label smoothing, ``nn.SGD`` with Nesterov momentum) once per value, each in a fresh process with
``--timeout`` seconds, the order rotated every round. It prints each value's median step time per round (or that
it did not finish in time: a pathological kernel choice shows as that) and, paired by round, each value's time over
the first value's (the geometric mean of the per-round ratios with a 95% t interval over their logs). How the
backend's ``jit_level: auto`` default and its oneDNN ISA cap for the CPU were chosen (docs/benchmarks.md,
"MindSpore's compile level" and "MindSpore's oneDNN ISA cap").

    python benchmarks/fairness/mindspore_options.py                        # levels: 128 px, batch 16, 3 rounds
    python benchmarks/fairness/mindspore_options.py --vary onednn_isa      # the ISA cap, same shapes
    python benchmarks/fairness/mindspore_options.py --image-size 64 --width 0.25 --rounds 1 --steps 3  # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

LEVELS = ("unset", "O0", "O1")
ISAS = ("AVX2", "AVX512_CORE", "ALL")


def one(args: argparse.Namespace) -> None:
    """In this process: time ``args.steps`` steps with ``args.one`` after ``args.warmup``; print one JSON line."""
    level = args.one if args.vary == "jit_level" else "O0"
    if args.vary == "onednn_isa":
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.one  # before MindSpore (and its oneDNN) loads
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # the backend's cap on AVX-512 CPUs
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from harness.models.specs import get_model
    from harness_mindspore.models import build_model

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    net = build_model(get_model("gluon_resnet50_v1b", width=args.width, num_classes=1000, image_size=args.image_size))
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.CrossEntropyLoss(label_smoothing=0.1)),
                               nn.SGD(net.trainable_params(), 0.1, momentum=0.9, nesterov=True))
    if level != "unset":
        step.set_jit_config(ms.JitConfig(jit_level=level))
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size), dtype=np.float32))
    y = ms.Tensor(rng.integers(0, 1000, args.batch_size).astype(np.int32))
    for _ in range(args.warmup):
        step(x, y).asnumpy()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = float(step(x, y).asnumpy())
        times.append(time.perf_counter() - t)
    print(json.dumps({"value": args.one, "median_s": float(np.median(times)), "loss": loss}))


def measure(args: argparse.Namespace, value: str) -> float | None:
    """``value``'s median step time from a fresh process, or None when it did not finish in ``args.timeout``."""
    flags = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("vary", "width", "image_size", "batch_size",
                                                                       "warmup", "steps")]
    try:
        out = subprocess.run([sys.executable, __file__, "--one", value, *flags], capture_output=True, text=True,
                             check=False, timeout=args.timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode:
        tail = ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"mindspore_options: {args.vary}={value} failed (exit {out.returncode}): {tail[:300]}")
    got: float = json.loads(out.stdout.strip().splitlines()[-1])["median_s"]
    return got


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vary", choices=("jit_level", "onednn_isa"), default="jit_level")
    p.add_argument("--isas", default=",".join(ISAS),
                   help="--vary onednn_isa: comma-separated ONEDNN_MAX_CPU_ISA values, the first the baseline")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (the first compiles)")
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for each process")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        one(args)
        return 0
    import numpy as np
    from scipy import stats

    from harness.measure.environment import cpu_flags, cpu_model

    values = LEVELS if args.vary == "jit_level" else tuple(v.strip() for v in args.isas.split(",") if v.strip())
    base = "O0" if args.vary == "jit_level" else values[0]
    print(f"{cpu_model()}; AVX-512: {'yes' if 'avx512f' in cpu_flags() else 'no'}; bf16 units: "
          f"{', '.join(sorted(f for f in cpu_flags() if f in ('amx_bf16', 'avx512_bf16'))) or 'none'}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    rounds: list[dict[str, float | None]] = []
    for r in range(args.rounds):
        got = {v: measure(args, v) for v in values[r % len(values):] + values[:r % len(values)]}
        rounds.append(got)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {v:.3f} s/step" if v is not None else f"{k} did not finish in {args.timeout:.0f} s"
            for k, v in got.items()), flush=True)
    for v in values:
        if v == base:
            continue
        pairs = [(g[v], g[base]) for g in rounds if g[v] is not None and g[base] is not None]
        if not pairs:
            print(f"{v} / {base} step time: no round where both finished")
            continue
        logs = np.log([a / b for a, b in pairs])
        centre = float(np.exp(logs.mean()))
        if len(logs) > 1:
            half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
            ci = f" [{np.exp(logs.mean() - half):.3f}, {np.exp(logs.mean() + half):.3f}]"
        else:
            ci = " (one round: no interval)"
        missed = sum(g[v] is None for g in rounds)
        print(f"{v} / {base} step time: {centre:.3f}x{ci}" + (f"; {missed} round(s) did not finish" if missed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
