"""bf16 on the CPU: each shipped backend trains in bf16 where the CPU runs it natively (AMX or AVX-512 BF16) and the
record says bf16 was used; where it cannot, the case is skipped with one line saying why."""
from __future__ import annotations

import math
import subprocess
import sys

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


# In a fresh process (MindSpore's context is global), each op on a bf16 tensor: one line per op saying whether the
# CPU ran it in bf16 or refused it, and how.
_MS_BF16_OPS = """
import harness_mindspore, mindspore as ms, numpy as np
ms.set_device("CPU")
harness_mindspore.absorb_numpy_abi_first_failure()  # so that a refusal is the kernel's, not NumPy 2's first-op one
x = ms.Tensor(np.ones((1, 4, 8, 8), np.float32)).astype(ms.bfloat16)
ops = {"relu": lambda: ms.ops.relu(x), "conv2d": lambda: ms.nn.Conv2d(4, 4, 3).to_float(ms.bfloat16)(x),
       "batchnorm": lambda: ms.nn.BatchNorm2d(4).to_float(ms.bfloat16)(x)}
for name, op in ops.items():
    try:
        y = op().asnumpy()
    except Exception as exc:
        print(name, "refused:", type(exc).__name__, (str(exc).strip().splitlines() or [""])[0][:200], flush=True)
    else:
        print(name, "bf16 kernel:", y.dtype, flush=True)
"""


@pytest.fixture(scope="module")
def mindspore_bf16_ops() -> tuple[dict[str, str], str]:
    out = subprocess.run([sys.executable, "-c", _MS_BF16_OPS], capture_output=True, text=True, check=False,
                         timeout=180)
    assert out.returncode == 0, (out.stdout, out.stderr[-500:])
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line), out.stderr[-500:]


@needs_mindspore
@pytest.mark.parametrize("op", ["relu", "conv2d", "batchnorm"])
def test_mindspores_cpu_has_no_bf16_kernels_so_its_refusal_is_true(op, mindspore_bf16_ops):
    """Why the MindSpore backend refuses bf16 on the CPU even where the CPU has bf16 units: MindSpore 2.10 has no
    CPU kernel for a ResNet's main ops in bf16. When a release adds them, this fails: then let bf16 run."""
    said, err = mindspore_bf16_ops
    assert said.get(op, "").startswith("refused: "), (said, err)
    assert "SystemError" not in said[op], said[op]  # (NumPy 2's first-op failure would prove nothing)
