"""A case's process: loads one backend, builds what the case's scenario needs and runs it.

Run by a launcher as ``python -m harness.run.worker CASE.json RESULT.json`` in the case's own folder (one process per
rank for several devices). The scenario (:mod:`harness.run.scenarios`) owns the measurement and times it with the one
timed loop (:mod:`harness.run.loop`); this module only wires the backend, the scenario and the result file together,
and turns whatever ends the case into its status and one-line reason. The result file is rewritten after each
phase, so a failure later in the case keeps what was already measured.
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import sys
import time
import traceback
from typing import Any

from harness.backends.arrays import NPZ, read_npz
from harness.backends.hook_checks import check_info
from harness.backends.loading import load_backend
from harness.config import Case
from harness.data.splits import scan_summary
from harness.dist import place
from harness.errors import HarnessError, Unsupported, one_line
from harness.models.weights import check_finite
from harness.run.launchers.process import Progress
from harness.run.launchers.ranks import cpus_here, rank_result_file, threads_per_rank
from harness.run.scenarios import Context, get_scenario

__all__ = ["run_case", "main"]


def _host_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _load_weights(hook: Any, case: Case, model: Any) -> None:
    """``settings.weights`` (a file the suite checked at load): a checkpoint of this backend, or a neutral
    ``.npz``, loaded strictly."""
    path = str(case.settings.weights)
    if path.endswith(NPZ):  # whatever the backend's own format, the core reads the neutral one
        weights = read_npz(path)
    else:
        weights = hook.harness_read_checkpoint(path=path)
    check_finite(weights, f"weights '{path}'")
    try:
        hook.harness_set_weights(case=case, model=model, weights=weights)
    except HarnessError as exc:
        raise HarnessError(f"'{path}': {exc}") from None


#: Thread-pool variables the core sets alike for every framework (before the backend is imported).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _same_threads(case: Case, ranks_here: int) -> tuple[Case, dict[str, Any]]:
    """Every framework gets the same thread count (:func:`harness.run.launchers.ranks.threads_per_rank`: ``threads``,
    else this process's share of the CPUs its affinity allows), in the case's settings (each backend applies it to
    its own pools) and in the OpenMP/BLAS variables (unless already set, e.g. by a launcher, to the same rule's
    value). Returns the case and what was set, for the record."""
    threads = threads_per_rank(case.settings.threads, ranks_here)
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, str(threads))
    case = dataclasses.replace(case, settings=dataclasses.replace(case.settings, threads=threads))
    return case, {"threads": threads, "affinity_cpus": cpus_here(),
                  **{var.lower(): os.environ[var] for var in THREAD_VARIABLES}}


def _failure(exc: BaseException, phase: str, device: str) -> dict[str, Any]:
    """The status and one-line reason for what ended the case; the traceback goes to the log for bugs only."""
    if isinstance(exc, Unsupported):  # includes DeviceUnavailable
        why = one_line(str(exc))
        return {"status": "skipped", "reason": why if why.startswith(device) else f"{device}: {why}"}
    if isinstance(exc, HarnessError):
        return {"status": "failed", "reason": f"{phase}: {one_line(str(exc))}"}
    if isinstance(exc, MemoryError):
        return {"status": "failed", "reason": f"{phase}: out of host memory"}
    if isinstance(exc, Terminated):
        return {"status": "failed", "terminated": True, "reason": f"{phase}: terminated by SIGTERM (stopped from "
                "outside, e.g. by the launcher after another rank failed)"}
    traceback.print_exc()
    # torch.OutOfMemoryError (CUDA), NPU and MindSpore allocators say "out of memory" in their messages
    oom = "OutOfMemory" in type(exc).__name__ or "out of memory" in str(exc).lower()
    return {"status": "failed", "reason": f"{phase}: {'out of device memory: ' if oom else ''}"
                                          f"{type(exc).__name__}: {one_line(str(exc), 400, first_line=True)}"}


def run_case(case: Case, result_path: str) -> dict[str, Any]:
    """Run ``case`` in this process; write and return the result dict."""
    where = place()
    if where.distributed:
        result_path = str(rank_result_file(result_path, where.rank))
    result: dict[str, Any] = {"status": "running", "reason": None, "metrics": {}, "samples": {}, "env": {},
                              "pid": os.getpid()}
    ctx = Context(case=case, hook=None, info={}, device=None, model=None, place=where, result=result,
                  progress=Progress(case.settings.batch_size * where.world) if where.rank == 0
                  else (lambda *a, **k: None), result_path=result_path)
    t_init = time.perf_counter()
    case, result["env"]["threads_set"] = _same_threads(case, max(1, where.world // case.settings.nodes))
    ctx.case = case
    try:
        scenario = get_scenario(case.settings.scenario)
        ctx.hook = hook = load_backend(case.backend).hook
        ctx.info = check_info(case.backend, hook.harness_backend_info())
        ctx.device = hook.harness_setup(case=case)
        if case.settings.devices * case.settings.nodes != where.world:
            raise HarnessError(f"devices: {case.settings.devices} x nodes: {case.settings.nodes}, but this process "
                               f"is one of {where.world}: multi-device cases are started by `harness run` through "
                               "the backend's launcher (torchrun, msrun)")
        for part in hook.harness_environment(case=case, device=ctx.device)[::-1]:
            result["env"].update(part or {})
        if scenario.builds_model(ctx.info):
            ctx.phase = "build"
            ctx.model = hook.harness_build_model(case=case, device=ctx.device)
            if case.settings.weights:
                ctx.phase = "weights"
                _load_weights(hook, case, ctx.model)
        ctx.init_s = time.perf_counter() - t_init
        ctx.save()
        scenario.run(ctx)
        if scan_summary():  # files of a data folder that were not readable images
            result["metrics"]["data"] = scan_summary()
        result["metrics"]["memory"] = {"host_peak_bytes": _host_peak_bytes(),
                                       "device_peak_bytes": hook.harness_device_memory(device=ctx.device)}
        result["status"] = "ok"
    except (Exception, Terminated) as exc:  # noqa: BLE001 - every way a case ends is recorded
        result.update(_failure(exc, ctx.phase, case.device))
    result["metrics"].setdefault("memory", {"host_peak_bytes": _host_peak_bytes()})
    ctx.save()
    return result


class Terminated(BaseException):
    """SIGTERM arrived: the launcher (or the runner) is stopping this process."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    case_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    with open(case_path, encoding="utf-8") as f:
        case = Case.from_dict(json.load(f))
    result = run_case(case, result_path)
    print(f"harness worker: {case.name}: {result['status']}" + (f": {result['reason']}" if result["reason"] else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
