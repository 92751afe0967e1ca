"""bf16 on the CPU: each shipped backend trains in bf16 where the CPU runs it natively (AMX or AVX-512 BF16) and the
record says bf16 was used; where it cannot, the case is skipped with one line saying why."""
from __future__ import annotations

import math

import pytest
from conftest import needs_mindspore

from harness.measure.environment import bf16_refusal, cpu_bf16, host_environment
from harness.results.records import read_records
from harness.run.runner import run_suite
from harness.run.suite import load_suite

SUITE = """\
name: bf16
models: [gluon_resnet50_v1b]
backends: [{backend}]
devices: [cpu]
settings: {{precision: bf16, width: 0.125, image_size: 32, num_classes: 10, batch_size: 4, warmup: 1, steps: 2,
            threads: 1, eval_batches: 1}}
"""


@pytest.mark.parametrize("backend", ["torch", pytest.param("mindspore", marks=needs_mindspore)])
def test_bf16_on_cpu_trains_where_native_else_refused_in_one_line(tmp_path, backend):
    (tmp_path / "s.yaml").write_text(SUITE.format(backend=backend))
    run_dir = run_suite(load_suite(tmp_path / "s.yaml"), tmp_path / "results", run_id="r1", quiet=True)
    (record,) = read_records(run_dir / "results.jsonl")
    assert record["config"]["settings"]["precision"] == "bf16"
    assert record["env"]["cpu_bf16"] == cpu_bf16()
    if backend == "torch" and cpu_bf16():
        assert record["status"] == "ok", record.get("reason")
        assert math.isfinite(record["metrics"]["train"]["loss_last"])
    else:  # MindSpore's CPU kernels are fp32 only; torch without native bf16 would measure the emulation
        assert record["status"] == "skipped"
        reason = record["reason"]
        assert reason.startswith("cpu: ") and "\n" not in reason
        assert ("fp32 only" in reason) if backend == "mindspore" else (reason == bf16_refusal())


def test_the_record_says_what_the_cpu_offers():
    env = host_environment()
    assert env["cpu_bf16"] in (None, "amx_bf16", "avx512_bf16")
    assert (bf16_refusal() is None) == (env["cpu_bf16"] is not None)
