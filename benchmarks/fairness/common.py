"""What the two expert loops (``torch_expert.py``, ``mindspore_expert.py``) share, none of it about the model or the
train step: their options, the host batch, the timed loop and the JSON line they print.

The batch comes from :func:`harness.data.synthetic.synthetic_arrays` and images/s from
:func:`harness.measure.steps.throughput` (both framework-neutral), so the expert and `harness run` train on the
same bytes and count images/s by the same rule; the model, optimizer, loss and loop are each script's own.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.config import DEVICES, Settings
from harness.data.synthetic import synthetic_arrays
from harness.measure.steps import throughput

__all__ = ["options", "channels", "host_batch", "timed_steps", "emit"]


def options(description: str) -> argparse.ArgumentParser:
    """The options both expert loops take (run.py passes the same values to `harness run`)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0: the published ResNet-50)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first one compiles)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the framework's choice)")
    p.add_argument("--seed", type=int, default=0)
    return p


def channels(c: int, width: float) -> int:
    """A layer's channels under the width multiplier (rounded, at least 1)."""
    return max(1, round(c * width))


def host_batch(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The one training batch, made once on the host: float32 NCHW normal images and int64 labels."""
    s = Settings(batch_size=args.batch_size, image_size=args.image_size, num_classes=args.num_classes,
                 seed=args.seed, warmup=args.warmup, steps=args.steps)
    return synthetic_arrays(s, "train")


def timed_steps(step: Callable[[], float], warmup: int, steps: int) -> tuple[list[float], float]:
    """Run ``warmup`` then ``steps`` iterations of ``step`` (one whole training iteration that returns the loss as a
    Python float, which is where it waits for the device); the timed ones' seconds and the last loss."""
    loss = float("nan")
    for _ in range(warmup):
        loss = step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    return times, loss


def emit(args: argparse.Namespace, framework: str, version: str, step_s: list[float], loss: float,
         **detail: Any) -> None:
    """Print the result as one JSON line (run.py reads the last line)."""
    print(json.dumps({"side": "expert", "framework": framework, "framework_version": version, "device": args.device,
                      "batch_size": args.batch_size, "image_size": args.image_size, "width": args.width,
                      "num_classes": args.num_classes, "warmup": args.warmup, "step_s": step_s,
                      "images_per_s": throughput(args.batch_size, step_s), "loss_last": loss, **detail}), flush=True)
