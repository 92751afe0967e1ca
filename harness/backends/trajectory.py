"""Training trajectories side by side: two backends trained for N steps from the same weights on the same batches.

Side a builds the model (seeded) and hands its initial weights to side b (``harness_set_weights``); each side, in its
own process (``python -m harness.backends.trajectory SPEC.json``), trains on the core's host batches of the case's
data (:class:`harness.data.host_batches.HostStream`: the same pixels in the same order for every backend, epoch after
epoch), Multigrain's sampling noise drawn from one seeded generator (:func:`harness.backends.parity.sampling_noise`).
Side a keeps its trainable weights after every step; side b compares its own with them as it goes, so nothing
larger than one run's weights is held in memory. Both sides hash the batches they were fed; different hashes are
an error. Per step (1-based; the loss of step k is computed on the weights before its update, the weights after it):
both losses, their absolute difference and the relative weight difference ``||w_b - w_a|| / ||w_a||`` over every
trainable tensor (:func:`harness.backends.parity.trainable_names`).

The band (:class:`Band`): ``|loss_a - loss_b| <= max(1e-4 x |loss_a|, 1e-5)`` and a relative weight difference of at
most ``1e-5``, chosen from measured drift (torch against MindSpore, tiny dataset, width 0.25, 64 px, batch 16, lr 0.1,
Nesterov, weight decay 1e-4, smoothing 0.1). Over its first three steps a well-conditioned correct pair (gluon,
GE-theta-minus, theta, theta-plus, Multigrain) differs by at most 1.4e-6 in weights and 2.1e-6 in loss: float32
rounding of different summation orders. Training then amplifies it, 3-200x a step, so such a pair leaves the band
at step 4 or 5 and levels off at 0.10-0.16 relative weight difference, each side learning as well as the other.
A wrong rule moves every update from step 1: measured against the same backend at width 0.125 and 32 px, Nesterov off
gives 5e-3 after one step, momentum 0.5 for 0.9 2e-3, ModelZoo's smoothing target 1.4e-4, half the weight decay or
decay on every parameter 8.5e-6 then 2e-5: out at step 1 or 2, before rounding could take it there. ResNet-50 BAM is
ill-conditioned at this size (see ``tests/test_parity.py``): torch against itself with 1 thread instead of 2 already
differs by 6e-4 after one step, and it leaves the band at step 1 from rounding alone.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.backends.child import report_errors
from harness.backends.parity import open_side, parity_case, run_side, sampling_noise, trainable_names
from harness.config import Case
from harness.data.host_batches import HostStream
from harness.data.orders import forever
from harness.errors import HarnessError
from harness.models.specs import get_model

__all__ = ["Band", "trajectory", "trajectory_case", "FILE_PREFIX"]

#: Trajectory files are ``trajectory-MODEL-A-B.json`` (JSON, not JSON Lines: they are not result records).
FILE_PREFIX = "trajectory-"


@dataclass(frozen=True)
class Band:
    """Where a correct pair's trajectories stay (see the module's doc for how the bounds were chosen)."""

    loss_rel: float = 1e-4
    loss_abs: float = 1e-5
    weight_rel: float = 1e-5

    def holds(self, loss_a: float, loss_b: float, weight_rel: float) -> bool:
        """Within the band (NaN is not)."""
        return (abs(loss_a - loss_b) <= max(self.loss_rel * abs(loss_a), self.loss_abs)
                and weight_rel <= self.weight_rel)

    def describe(self) -> str:
        return (f"|loss diff| <= max({self.loss_rel:g} x |loss|, {self.loss_abs:g}) and weight rel diff <= "
                f"{self.weight_rel:g}")


def trajectory_case(model: str, backend: str, data_root: str, **settings: Any) -> Case:
    """The one-step parity case (:func:`harness.backends.parity.parity_case`: fp32, Nesterov, decay, smoothing) on
    the tiny dataset at ``data_root``, batch 16 (18 for repeated augmentation), decoded in-process."""
    repeats = get_model(model).repeats
    base: dict[str, Any] = dict(data="tiny", data_root=data_root, workers=0,
                                batch_size=16 if repeats == 1 else 6 * repeats)
    return parity_case(model, backend, **{**base, **settings})


def _flat(weights: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.concatenate([np.asarray(weights[k], dtype=np.float32).ravel() for k in names])


def _side(spec: dict[str, Any]) -> dict[str, Any]:
    """One backend's ``spec['steps']`` steps, in this process. Side a (``spec['initial']``: where to write its
    initial weights) writes its trainable weights after each step to ``spec['trace']``; side b (``spec['weights']``)
    reads them and returns the relative difference of its own."""
    t0 = time.perf_counter()
    case, hook, device, model = open_side(spec)
    s, m, steps = case.settings, get_model(case.model), int(spec["steps"])
    weights = hook.harness_get_weights(case=case, model=model)
    names = trainable_names(weights)
    if spec.get("initial"):
        np.savez(spec["initial"], **weights)
        size = _flat(weights, names).size
        trace = np.lib.format.open_memmap(spec["trace"], mode="w+", dtype=np.float32, shape=(steps, size))
    else:
        trace = np.load(spec["trace"], mmap_mode="r")
        with np.load(spec["weights"]) as z:
            theirs = trainable_names(z.files)
        if names != theirs:
            extra = sorted(set(names) ^ set(theirs))[:3]
            raise HarnessError(f"backend '{case.backend}': its trainable tensors are not side a's ({', '.join(extra)})")
    host = HostStream(s, "train", repeats=m.repeats, mean=m.mean, std=m.std)
    step = hook.harness_train_step(case=case, model=model, device=device, total_steps=steps,
                                   steps_per_epoch=len(host))
    rng, digest = np.random.default_rng(s.seed), hashlib.sha256()
    losses: list[float] = []
    rel: list[float] = []
    batches = forever(host)
    for k in range(steps):
        arrays = (*next(batches), *sampling_noise(case.model, s.batch_size, rng).values())
        for a in arrays:
            digest.update(np.ascontiguousarray(a).tobytes())
        losses.append(float(hook.harness_to_host(value=step(hook.harness_to_device(arrays=arrays, device=device)))))
        now = _flat(hook.harness_get_weights(case=case, model=model), names)
        if spec.get("initial"):
            trace[k] = now
        else:
            ref = np.asarray(trace[k], dtype=np.float64)
            rel.append(float(np.linalg.norm(now - ref) / (np.linalg.norm(ref) or 1.0)))
    host.close()
    if spec.get("initial"):
        trace.flush()
    return {"losses": losses, "weight_rel": rel, "digest": digest.hexdigest(), "seconds": time.perf_counter() - t0}


def _exit_step(band: Band, loss_a: list[float], loss_b: list[float], rel: list[float]) -> int | None:
    return next((k for k, (la, lb, r) in enumerate(zip(loss_a, loss_b, rel), 1) if not band.holds(la, lb, r)), None)


def trajectory(model: str, a: str, b: str, steps: int, data_root: str, *, band: Band | None = None,
               timeout: float = 1800, other_settings: dict[str, Any] | None = None,
               **settings: Any) -> dict[str, Any]:
    """Train ``model`` on backends ``a`` and ``b`` side by side for ``steps`` steps (see the module's doc); the
    trajectory as a JSON-ready dict. ``settings`` apply to both sides (:func:`trajectory_case`), ``other_settings``
    to b only (a deliberately different side)."""
    if steps < 1:
        raise HarnessError(f"--steps {steps}: must be at least 1")
    band, t0 = band or Band(), time.perf_counter()
    case_a = trajectory_case(model, a, data_root, **settings)
    case_b = trajectory_case(model, b, data_root, **{**settings, **(other_settings or {})})
    module = "harness.backends.trajectory"
    with tempfile.TemporaryDirectory(prefix="harness-trajectory-") as tmp:
        work = Path(tmp)
        initial, trace = str(work / "initial.npz"), str(work / "trace.npy")
        ra = run_side(module, {"case": case_a.to_dict(), "steps": steps, "initial": initial, "trace": trace},
                      work, "a", timeout)
        rb = run_side(module, {"case": case_b.to_dict(), "steps": steps, "weights": initial, "trace": trace},
                      work, "b", timeout)
    if ra["digest"] != rb["digest"]:
        raise HarnessError(f"trajectory {model}: backends '{a}' and '{b}' were fed different batches")
    loss_a, loss_b, rel = ra["losses"], rb["losses"], rb["weight_rel"]
    diff = [abs(x - y) for x, y in zip(loss_a, loss_b)]
    return {"kind": "trajectory", "model": model, "backends": [a, b], "steps": steps,
            "settings": asdict(case_a.settings), "other_settings": dict(other_settings or {}),
            "band": asdict(band), "band_text": band.describe(), "exit_step": _exit_step(band, loss_a, loss_b, rel),
            "final_loss_diff": diff[-1], "final_weight_rel": rel[-1],
            "max_weight_rel": float(np.max(rel)),
            "loss_a": loss_a, "loss_b": loss_b, "loss_diff": diff, "weight_rel": rel,
            "seconds": [ra["seconds"], rb["seconds"]], "wall_s": time.perf_counter() - t0,
            "harness_version": __version__}


if __name__ == "__main__":
    report_errors(lambda: _side(json.loads(Path(sys.argv[1]).read_text())))
