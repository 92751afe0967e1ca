"""Cross-framework parity: do two backends compute the same function from the same weights?

The reference backend builds the model (seeded) and hands its weights over as
neutral NumPy arrays; each backend, in its own process, loads them and
reports eval logits on one fixed batch, then the loss of one training step on
that batch and the weights after it (BatchNorm running statistics included).

``python -m harness.backends.parity SPEC.json`` is one backend's side; :func:`compare`
runs both and returns the differences. The pieces both this one-step check and the trajectories of
:mod:`harness.backends.trajectory` use: :func:`parity_case`, :func:`sampling_noise`, :func:`open_side`,
:func:`run_side` and :func:`trainable_names`.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.child import report_errors, run_json
from harness.backends.loading import load_backend
from harness.config import Case, Settings
from harness.models.specs import get_model
from harness.models.weights import OPTIONAL_SUFFIXES

__all__ = ["BN_STATS", "ParityResult", "compare", "open_side", "parity_case", "run_side", "sampling_noise",
           "trainable_names", "UPDATE_REL_TOL"]

#: One step's updates must agree to this fraction of the largest update. A wrong recipe (Nesterov,
#: weight-decay groups, label smoothing, schedule) gives O(1e-1); float32 rounding gives ~1e-7.
UPDATE_REL_TOL = 1e-4
#: BatchNorm's running statistics: neutral weights a step changes without the optimiser.
BN_STATS = (".running_mean", ".running_var")


def trainable_names(names: Any) -> list[str]:
    """The tensors an optimiser step moves, sorted: every neutral name but BatchNorm's running statistics and the
    counters some frameworks keep (:data:`harness.models.weights.OPTIONAL_SUFFIXES`)."""
    return sorted(k for k in names if not k.endswith((*BN_STATS, *OPTIONAL_SUFFIXES)))


def sampling_noise(model: str, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``{"noise": (B, B) uniform float32}`` for a model whose step samples (Multigrain's negatives), else ``{}``:
    passed as the batch's third array, so both sides sample the same."""
    if get_model(model).loss != "multigrain":
        return {}
    return {"noise": rng.random((batch_size, batch_size)).astype(np.float32)}


def parity_case(model: str, backend: str, **settings: Any) -> Case:
    """A small fp32 case exercising the whole recipe path (nesterov, smoothing, decay)."""
    repeats = get_model(model).repeats  # Multigrain: two whole instances of 3 copies
    base: dict[str, Any] = dict(width=0.25, image_size=64, num_classes=10,
                                batch_size=4 if repeats == 1 else 2 * repeats, lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=1e-4, label_smoothing=0.1, seed=0, data="synthetic")
    base.update(settings)
    return Case(name=f"parity-{model}-{backend}", model=model, backend=backend, device="cpu",
                settings=Settings(**base))


def _calibrate(hook: Any, case: Case, model: Any, device: Any, arrays: tuple[np.ndarray, ...], steps: int) -> None:
    """Give BatchNorm realistic running statistics: training-mode passes with lr 0 (weights unchanged).

    A freshly initialised network has running mean 0 / variance 1, so in eval mode activations can grow
    by orders of magnitude over 16 blocks (BAM, with no zero-initialised last BN, reaches ~6e3) and float32
    rounding alone then exceeds an absolute tolerance. Calibrated, activations stay O(1), as in a trained
    network, and an absolute tolerance measures what it should.
    """
    frozen = dataclasses.replace(case, settings=dataclasses.replace(
        case.settings, lr=0.0, momentum=0.0, nesterov=False, weight_decay=0.0, schedule="constant",
        lr_warmup_epochs=0.0))
    step = hook.harness_train_step(case=frozen, model=model, device=device, total_steps=steps, steps_per_epoch=steps)
    batch = hook.harness_to_device(arrays=arrays, device=device)
    for _ in range(steps):
        step(batch)
    hook.harness_synchronize(device=device)


def open_side(spec: dict[str, Any]) -> tuple[Case, Any, Any, Any]:
    """A side's ``(case, hook, device, model)`` in this process: ``spec['case']`` built on its backend (seeded),
    with the weights of ``spec['weights']`` (.npz) when given."""
    case = Case.from_dict(spec["case"])
    hook = load_backend(case.backend).hook
    device = hook.harness_setup(case=case)
    model = hook.harness_build_model(case=case, device=device)
    if spec.get("weights"):
        with np.load(spec["weights"]) as z:
            hook.harness_set_weights(case=case, model=model, weights=dict(z))
    return case, hook, device, model


def _side(spec: dict[str, Any]) -> dict[str, bool]:
    """One backend's side, in this process: writes ``spec['out']`` (.npz)."""
    case, hook, device, model = open_side(spec)
    with np.load(spec["inputs"]) as z:
        arrays = (z["images"], z["labels"], *((z["noise"],) if "noise" in z else ()))
    images = arrays[0]
    if not spec.get("weights") and spec.get("calibrate"):
        _calibrate(hook, case, model, device, arrays, spec["calibrate"])
    before = hook.harness_get_weights(case=case, model=model)
    logits = hook.harness_predict(case=case, model=model, device=device, images=images)
    step = hook.harness_train_step(case=case, model=model, device=device, total_steps=1, steps_per_epoch=1)
    loss = hook.harness_to_host(value=step(hook.harness_to_device(arrays=arrays, device=device)))
    hook.harness_synchronize(device=device)
    after = hook.harness_get_weights(case=case, model=model)
    np.savez(spec["out"], logits=logits, loss=np.float64(loss),
             **{f"before/{k}": v for k, v in before.items()}, **{f"after/{k}": v for k, v in after.items()})
    return {"ok": True}


@dataclass
class ParityResult:
    logits_max_abs: float
    loss_abs: float
    losses: tuple[float, float]
    running_stats_max_abs: float  # BatchNorm running mean/var after one step
    weights_max_abs: float  # every trainable tensor after one step
    worst_running_stat: str
    worst_weight: str
    update_rel_max: float  # max |update_a - update_b| / max |update_a| over all trainable tensors


def run_side(module: str, spec: dict[str, Any], work: Path, label: str, timeout: float) -> dict[str, Any]:
    """Run ``python -m module SPEC.json`` for one side (``label``: a or b) in its own folder under ``work``; its
    JSON result."""
    backend = spec["case"]["backend"]
    spec_file = work / f"{label}.json"
    spec_file.write_text(json.dumps(spec))
    (work / label).mkdir(exist_ok=True)
    return run_json(module, [str(spec_file)], what=f"{module.rpartition('.')[2]}: backend '{backend}'",
                    cwd=str(work / label), timeout=timeout)


def _run_side(spec: dict[str, Any], work: Path, label: str, timeout: float) -> dict[str, np.ndarray]:
    run_side("harness.backends.parity", spec, work, label, timeout)
    with np.load(spec["out"]) as z:
        return dict(z)


def compare(model: str, reference: str, other: str, timeout: float = 600, other_settings: dict[str, Any] | None = None,
            calibrate: int = 40, **settings: Any) -> ParityResult:
    """Run ``model`` on two backends from the same weights and batch; return the differences.

    ``settings`` apply to both sides, ``other_settings`` to the second only (e.g. its ``mode``).
    The reference first calibrates BatchNorm statistics over ``calibrate`` frozen passes.
    """
    with tempfile.TemporaryDirectory(prefix="harness-parity-") as tmp:
        work = Path(tmp)
        case = parity_case(model, reference, **settings)
        s = case.settings
        rng = np.random.default_rng(1234)
        noise: dict[str, Any] = sampling_noise(model, s.batch_size, rng)  # drawn first: the same inputs as ever
        np.savez(work / "inputs.npz",
                 images=rng.standard_normal((s.batch_size, 3, s.image_size, s.image_size), dtype=np.float32),
                 labels=rng.integers(0, s.num_classes, s.batch_size).astype(np.int64), **noise)
        a = _run_side({"case": case.to_dict(), "inputs": str(work / "inputs.npz"), "out": str(work / "a.npz"),
                       "calibrate": calibrate}, work, "a", timeout)
        weights: dict[str, Any] = {k[len("before/"):]: v for k, v in a.items() if k.startswith("before/")}
        np.savez(work / "weights.npz", **weights)
        b = _run_side({"case": parity_case(model, other, **{**settings, **(other_settings or {})}).to_dict(),
                       "inputs": str(work / "inputs.npz"), "weights": str(work / "weights.npz"),
                       "out": str(work / "b.npz")}, work, "b", timeout)
    stats = [k for k in a if k.startswith("after/") and k.endswith(BN_STATS)]
    diffs = {k: float(np.max(np.abs(a[k] - b[k]))) for k in stats}
    worst = max(diffs, key=lambda k: diffs[k]) if diffs else ""
    trainable = {k: float(np.max(np.abs(a[k] - b[k]))) for k in trainable_names(k for k in a if k.startswith("after/"))}
    worst_weight = max(trainable, key=lambda k: trainable[k]) if trainable else ""
    # The update each side made in one step, the largest disagreement relative to the largest update.
    updates = {k: a[k] - a["before/" + k.removeprefix("after/")] for k in trainable}
    scale = max((float(np.max(np.abs(u))) for u in updates.values()), default=0.0)
    gap = max((float(np.max(np.abs(updates[k] - (b[k] - b["before/" + k.removeprefix("after/")]))))
               for k in updates), default=0.0)
    return ParityResult(
        logits_max_abs=float(np.max(np.abs(a["logits"] - b["logits"]))),
        loss_abs=abs(float(a["loss"]) - float(b["loss"])),
        losses=(float(a["loss"]), float(b["loss"])),
        running_stats_max_abs=diffs[worst] if diffs else 0.0,
        weights_max_abs=trainable[worst_weight] if trainable else 0.0,
        worst_running_stat=worst.removeprefix("after/"),
        worst_weight=worst_weight.removeprefix("after/"),
        update_rel_max=gap / scale if scale else 0.0,
    )


if __name__ == "__main__":
    report_errors(lambda: _side(json.loads(Path(sys.argv[1]).read_text())))
