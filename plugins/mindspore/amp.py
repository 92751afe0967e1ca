"""Mixed precision in the MindSpore backend: the AMP level a case runs at and the dtype of each precision."""
from __future__ import annotations

import mindspore as ms

from harness.config import Case
from harness.errors import Unsupported
from harness.measure.environment import cpu_bf16

__all__ = ["AMP_DTYPES", "amp_level"]

AMP_DTYPES = {"fp16": ms.float16, "bf16": ms.bfloat16}


def amp_level(case: Case, device_target: str) -> str:
    """The AMP level to use, refusing what the device cannot run. (The core checks at suite load that the level
    and precision agree: O0 is fp32, O1-O3 need fp16 or bf16.)"""
    s = case.settings
    level = s.amp_level if s.amp_level != "auto" else ("O0" if s.precision == "fp32" else "O2")
    if level != "O0" and device_target == "CPU":
        native = f"; this CPU has {cpu_bf16()}" if cpu_bf16() else ""
        raise Unsupported(f"cpu: MindSpore mixed precision ({s.precision}, {level}) is not supported on CPU "
                          f"(its CPU Conv2D kernels are fp32 only{native})")
    return level
