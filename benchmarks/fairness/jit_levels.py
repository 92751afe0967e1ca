"""MindSpore's graph compile levels side by side: unset (MindSpore's own choice), O0 and O1, on harness's ResNet-50.

Each round trains the same GRAPH-mode ``TrainOneStepCell`` (harness's MindSpore model, cross-entropy with label
smoothing, ``nn.SGD`` with Nesterov momentum) once per level, each in a fresh process, the order rotated every
round; it prints each level's median step time per round and, paired by round, each level's time over O0's (the
geometric mean of the per-round ratios with a 95% t interval over their logs). How the backend's ``jit_level: auto``
default for the CPU was chosen (docs/benchmarks.md, "MindSpore's compile level").

    python benchmarks/fairness/jit_levels.py                       # 128 px, batch 16, full width, 3 rounds
    python benchmarks/fairness/jit_levels.py --image-size 64 --width 0.25 --rounds 1 --steps 3   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

LEVELS = ("unset", "O0", "O1")


def one(args: argparse.Namespace) -> None:
    """In this process: time ``args.steps`` steps at ``args.one`` after ``args.warmup``; print one JSON line."""
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
    if args.one != "unset":
        step.set_jit_config(ms.JitConfig(jit_level=args.one))
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size), dtype=np.float32))
    y = ms.Tensor(rng.integers(0, 1000, args.batch_size).astype(np.int32))
    for _ in range(args.warmup):
        step(x, y).asnumpy()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step(x, y).asnumpy()
        times.append(time.perf_counter() - t)
    print(json.dumps({"level": args.one, "median_s": float(np.median(times))}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (the first compiles)")
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--one", choices=LEVELS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        one(args)
        return 0
    import numpy as np
    from scipy import stats

    rounds: list[dict[str, float]] = []
    flags = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("width", "image_size", "batch_size", "warmup",
                                                                       "steps")]
    for r in range(args.rounds):
        got: dict[str, float] = {}
        for level in LEVELS[r % 3:] + LEVELS[:r % 3]:
            out = subprocess.run([sys.executable, __file__, "--one", level, *flags], capture_output=True, text=True,
                                 check=True)
            got[level] = json.loads(out.stdout.strip().splitlines()[-1])["median_s"]
        rounds.append(got)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v:.3f} s/step" for k, v in got.items()), flush=True)
    for level in ("unset", "O1"):
        logs = np.log([g[level] / g["O0"] for g in rounds])
        centre = float(np.exp(logs.mean()))
        if len(logs) > 1:
            half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
            ci = f" [{np.exp(logs.mean() - half):.3f}, {np.exp(logs.mean() + half):.3f}]"
        else:
            ci = " (one round: no interval)"
        print(f"{level} / O0 step time: {centre:.3f}x{ci}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
