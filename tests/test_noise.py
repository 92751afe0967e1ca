"""Measurements that flag their own noise: the thresholds on known samples, and a real case run beside a CPU hog
marked unstable in its record, its report and by the gate (which refuses to judge it)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.cli.main import main
from harness.measure.noise import (
    CV_MAX,
    DRIFT_MAX,
    OTHER_CORES_MAX,
    assess,
    drift_limit,
)
from harness.results.records import read_records
from harness.results.report import render_markdown
from harness.run.runner import run_suite
from harness.run.suite import load_suite


def test_thresholds_on_known_samples():
    steady = [0.1] * 10
    assert assess(steady, {"other_cores_busy": 0.0})["unstable"] is False
    spread = [0.1, 0.2, 0.1, 0.2, 0.15, 0.15, 0.1, 0.2, 0.1, 0.2]  # both halves' medians 0.15: no drift
    out = assess(spread, {})
    assert out["cv"] > CV_MAX and out["reasons"] == [f"step times vary: CV {out['cv']:.0%} > {CV_MAX:.0%}"]
    drifting = [0.1] * 50 + [0.1 * (1 + 1.5 * DRIFT_MAX)] * 50
    reasons = assess(drifting, {})["reasons"]
    assert any(r.startswith(f"steps drift: second half +{1.5 * DRIFT_MAX:.0%}") for r in reasons)
    # with fewer steps the halves' medians are noisier: the same drift over 25 steps is within the limit (2x wider)
    assert drift_limit(25) == pytest.approx(2 * DRIFT_MAX) and drift_limit(400) == DRIFT_MAX
    assert assess(drifting[::4], {})["unstable"] is False
    assert "limit 40% at 25 steps" in assess([0.1] * 12 + [0.15] * 13, {})["reasons"][0]
    busy = assess(steady, {"other_cores_busy": OTHER_CORES_MAX + 0.5, "wall_s": 10, "cpu_count": 2, "steal_s": 2.0})
    assert busy["unstable"] and len(busy["reasons"]) == 2 and busy["steal_share"] == pytest.approx(0.1)
    assert assess([0.1, 0.5], {})["cv"] is None  # too few steps to judge their spread


SUITE = """name: noise
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 4, steps: 30, warmup: 1, eval: false, timeout: 120}
"""


def test_a_case_run_beside_a_cpu_hog_is_unstable_and_the_gate_refuses_to_judge_it(tmp_path, fake_backend,
                                                                                  monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_FAKE_STEP_SLEEP", "0.05")  # 30 steps: 1.5 s of steady, idle steps
    path = tmp_path / "noise.yaml"
    path.write_text(SUITE)
    quiet = run_suite(load_suite(path), tmp_path / "results", run_id="quiet", quiet=True)
    # two CPU hogs that are not this process's children (as another user's job would be): started through a shell
    # that exits at once
    hogs = f"for i in 1 2; do {sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!; done"
    out = subprocess.run(["sh", "-c", hogs], capture_output=True, text=True, check=True)
    hogs = [int(pid) for pid in out.stdout.split()]
    try:
        time.sleep(0.3)
        busy = run_suite(load_suite(path), tmp_path / "results", run_id="busy", quiet=True)
    finally:
        for pid in hogs:
            os.kill(pid, signal.SIGKILL)
    (rec,) = read_records(busy / "results.jsonl")
    noise = rec["noise"]
    assert noise["unstable"] and noise["other_cores_busy"] > OTHER_CORES_MAX, noise
    assert any(r.startswith("other processes used ") for r in noise["reasons"]), noise
    assert "## Unstable measurements" in render_markdown([rec]) and "other processes used" in render_markdown([rec])
    (before,) = read_records(quiet / "results.jsonl")
    assert before["noise"]["other_cores_busy"] < noise["other_cores_busy"]
    assert main(["compare", str(quiet), str(busy)]) == 2
    captured = capsys.readouterr()
    assert "| unstable" in captured.out and "cannot be judged (unstable)" in captured.err
    json.dumps(rec)  # the record stays plain JSON
