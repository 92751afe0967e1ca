"""A package of its own that adds one scenario and one launcher through entry points (tests/test_roles.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from harness.measure.steps import summarize
from harness.run.launchers import Launcher
from harness.run.scenarios import Scenario

#: Starts settings.devices workers of the case directly, each told its place the way torchrun does.
_SPAWN = """
import os, subprocess, sys
n, case, result = int(sys.argv[1]), sys.argv[2], sys.argv[3]
procs = [subprocess.Popen([sys.executable, "-m", "harness.run.worker", case, result],
                          env=dict(os.environ, RANK=str(r), WORLD_SIZE=str(n), LOCAL_RANK=str(r))) for r in range(n)]
sys.exit(max(p.wait() for p in procs))
"""


class Predict(Scenario):
    name = "predict"
    help = "harness_predict latency on synthetic images"
    hooks = ("harness_build_model", "harness_predict")

    def run(self, ctx):
        s = ctx.settings
        images = np.zeros((s.batch_size, 3, s.image_size, s.image_size), np.float32)

        def call(i: int = 0):
            return ctx.hook.harness_predict(case=ctx.case, model=ctx.model, device=ctx.device, images=images)

        loop = ctx.loop()
        first = loop.prime(call, s.warmup)
        timed = loop.run(call, 0, s.steps, first_alone=False, phase="predict")
        ctx.metrics["predict"] = {"first_s": first, "ms_per_batch": summarize(timed.samples)}


class Spawn(Launcher):
    name = "spawn"
    help = "one worker process per device, started directly"

    def command(self, case, case_file: Path, result_file: Path, case_dir: Path):
        return [sys.executable, "-c", _SPAWN, str(case.settings.devices), str(case_file), str(result_file)], {}
