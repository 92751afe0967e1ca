"""Harness overhead: images/s measured by `harness run` vs a bare hand-written loop.

Both sides train the same model (gluon_resnet50_v1b, reduced by default), with
the same batch, optimizer and device, each in a fresh process. The two are
alternated for several rounds so that machine noise hits both alike; the
script prints the ratio harness / bare of the median images/s. Goal: >= 0.99.

    python benchmarks/overhead/run.py                       # torch, CPU, width 0.25, 64 px
    python benchmarks/overhead/run.py --backend mindspore   # MindSpore GRAPH mode, CPU
    python benchmarks/overhead/run.py --width 1 --image-size 224 --batch-size 8 --device gpu

The bare loop times its steps the same way a careful user would by hand:
synchronise, start the clock, run the steps, synchronise, stop the clock.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from harness.backends.child import child_env

BARE = {
    "torch": textwrap.dedent("""
        import json, sys, time, torch
        from harness.models.specs import get_model
        from harness_torch.models import build_model
        a = json.loads(sys.argv[1])
        dev = torch.device({"cpu": "cpu", "gpu": "cuda"}[a["device"]])
        if a["threads"]:
            torch.set_num_threads(a["threads"])
        torch.manual_seed(0)
        spec = get_model("gluon_resnet50_v1b", width=a["width"], num_classes=a["num_classes"])
        model = build_model(spec).to(dev).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.randn(a["batch_size"], 3, a["image_size"], a["image_size"], device=dev)
        y = torch.randint(0, a["num_classes"], (a["batch_size"],), device=dev)
        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize()
        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        for _ in range(a["warmup"]):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(a["steps"]):
            step()
        sync()
        print(json.dumps({"images_per_s": a["batch_size"] * a["steps"] / (time.perf_counter() - t0)}))
    """),
    "mindspore": textwrap.dedent("""
        import json, sys, time
        import harness_mindspore  # the backend's environment fixes (oneDNN ISA), nothing else
        import mindspore as ms, numpy as np
        from mindspore import nn
        from harness.models.specs import get_model
        from harness_mindspore.models import build_model
        a = json.loads(sys.argv[1])
        ms.set_device({"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}[a["device"]])
        ms.set_context(mode=ms.GRAPH_MODE)
        ms.set_seed(0)
        spec = get_model("gluon_resnet50_v1b", width=a["width"], num_classes=a["num_classes"])
        net = build_model(spec)
        opt = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
        step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.CrossEntropyLoss()), opt)
        step.set_train(True)
        rng = np.random.default_rng(0)
        x = ms.Tensor(rng.standard_normal((a["batch_size"], 3, a["image_size"], a["image_size"]), dtype=np.float32))
        y = ms.Tensor(rng.integers(0, a["num_classes"], a["batch_size"]).astype(np.int32))
        for _ in range(a["warmup"]):
            step(x, y)
        ms.runtime.synchronize()
        t0 = time.perf_counter()
        for _ in range(a["steps"]):
            step(x, y)
        ms.runtime.synchronize()
        print(json.dumps({"images_per_s": a["batch_size"] * a["steps"] / (time.perf_counter() - t0)}))
    """),
}


def bare(args: argparse.Namespace) -> float:
    params = {k: getattr(args, k) for k in ("device", "width", "image_size", "batch_size", "num_classes",
                                            "warmup", "steps", "threads")}
    with tempfile.TemporaryDirectory() as cwd:  # MindSpore writes files into the working folder
        out = subprocess.run([sys.executable, "-c", BARE[args.backend], json.dumps(params)], capture_output=True,
                             text=True, check=True, cwd=cwd, env=child_env())
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def harness(args: argparse.Namespace, work: Path, i: int) -> float:
    suite = work / "overhead.yaml"
    suite.write_text(json.dumps({
        "name": "overhead", "models": ["gluon_resnet50_v1b"], "backends": [args.backend], "devices": [args.device],
        "settings": {"width": args.width, "image_size": args.image_size, "batch_size": args.batch_size,
                     "num_classes": args.num_classes, "warmup": args.warmup, "steps": args.steps,
                     "weight_decay": 0.0, "lr": 0.1, "momentum": 0.9, "eval": False, "threads": args.threads},
    }))  # JSON is YAML
    subprocess.run([sys.executable, "-m", "harness.cli.main", "run", str(suite), "--results", str(work),
                    "--run-id", f"r{i}", "--quiet", "--no-report"], check=True, cwd=work, capture_output=True,
                   env=child_env())
    rec = json.loads((work / "overhead" / f"r{i}" / "results.jsonl").read_text().splitlines()[-1])
    if rec["status"] != "ok":
        raise SystemExit(f"harness case {rec['status']}: {rec['reason']}")
    return rec["metrics"]["train"]["images_per_s"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="torch", choices=sorted(BARE))
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    h, b = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):  # alternate, so drift in machine speed hits both sides
            b.append(bare(args))
            h.append(harness(args, Path(tmp), i))
            print(f"round {i + 1}: bare {b[-1]:8.1f} img/s   harness {h[-1]:8.1f} img/s", flush=True)
    ratio = statistics.median(h) / statistics.median(b)
    paired = statistics.median(x / y for x, y in zip(h, b))  # each round's pair ran back to back
    print(f"{args.backend}/{args.device} width {args.width} {args.image_size}px batch {args.batch_size}: "
          f"median bare {statistics.median(b):.1f} img/s, harness {statistics.median(h):.1f} img/s, "
          f"ratio of medians {ratio:.3f}, median of per-round ratios {paired:.3f} (goal >= 0.99)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
