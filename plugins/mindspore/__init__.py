"""harness_mindspore: the MindSpore backend (CPU, GPU, Ascend 910 training / 310 inference).

Registered as ``mindspore`` in the ``harness.backends`` entry-point group.
Importing this package fixes the environment before MindSpore is loaded:
on AVX-512 CPUs MindSpore's bundled oneDNN otherwise runs convolutions 13-40x
slower (``ONEDNN_MAX_CPU_ISA=AVX2``; a ResNet-50 train step took 29x longer at
AVX512_CORE, AVX512_CORE_BF16 and no cap on an AMD EPYC with AVX-512 BF16:
docs/benchmarks.md, "MindSpore's oneDNN ISA cap").
"""
from __future__ import annotations

import os

__version__ = "0.1.0"


def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in f)
    except OSError:
        return False


if "mindspore" not in __import__("sys").modules and _cpu_has_avx512():
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ log: errors only


def absorb_numpy_abi_first_failure() -> None:
    """Run the one PYNATIVE op that fails once under NumPy 2, so that no real op does.

    MindSpore 2.10 is built against NumPy 1.x. Under NumPy 2 the first PYNATIVE reduction over a tuple of
    axes tries to import NumPy 1's C API, fails, and raises ``SystemError`` ("returned a result with an
    exception set"); the same op then works for the rest of the process. Call after the device is set.
    """
    import contextlib
    import io

    import mindspore as ms
    import numpy as np

    # NumPy prints its "compiled using NumPy 1.x" notice with a stack trace on stderr: expected here, and a
    # traceback in every MindSpore case log would read as a failure
    with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(SystemError):
        ms.ops.mean(ms.Tensor(np.zeros((1, 1, 1), np.float32)), (1, 2))
