"""Golden checks: does a backend's network compute what the specification says, not only return the right shapes?

For every model a backend declares, on the golden case (:func:`golden_case`: width 0.125, 64 px, 10 classes, batch
8, 12 for Multigrain's repeated augmentation (64 px, so that stage 4's map is 2x2: over 1x1 GeM's exponent, a
gather-excite's global extent and average pooling would not matter); SGD, lr 0.1, Nesterov momentum 0.9, weight
decay 0.01 on conv and linear weights, label smoothing 0.1, constant schedule), ``harness check-backend`` checks:

* **contract**: the names, shapes and dtypes ``harness_get_weights`` gives for a freshly built model are those of
  :func:`harness.models.contract.layout` (``num_batches_tracked`` may be left out);
* **eval logits** of the seeded, calibrated weights (:func:`harness.models.reference.calibrated_weights`, loaded with
  ``harness_set_weights``) on a fixed batch, against the NumPy reference (:func:`harness.models.reference.forward`);
* **one training step** on that batch: the loss against the reference's (:func:`~harness.models.reference.
  training_loss`), every BatchNorm running statistic against the reference's, and the tensors of
  :func:`tracked` after the step against golden values shipped in ``harness/backends/golden/MODEL.npz``. The
  reference has no backward pass: the updates (gradients, momentum, Nesterov, the weight-decay groups) are checked
  against values that ``harness golden --write`` (:func:`regenerate`) produced by running the torch and MindSpore
  backends, stored only when both agree with the reference and with each other within these tolerances; the file
  says so (its ``about``).

Each tolerance is relative to the size of what it compares, stated per check (:data:`TOLERANCES`) and measured far
above float32 rounding (~1e-6 here). A failure names the check, the worst tensor and the size of the difference. A
backend whose ``supports["neutral_weights"]`` is false (it cannot hold weights in the neutral layout) gets every
golden check skipped with that reason; so does one that only loads exports.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.child import report_errors, run_json
from harness.backends.conformance_checks import Checks, expect
from harness.backends.hook_checks import loads_exports_only, scenarios_of, supports_of
from harness.backends.loading import load_backend
from harness.config import Case, Settings
from harness.errors import HarnessError
from harness.models.contract import layout, seeded_weights, shapes
from harness.models.losses import loss_for
from harness.models.reference import calibrated_weights, forward, training_loss
from harness.models.specs import ModelSpec, get_model
from harness.models.weights import check_weights

__all__ = ["GOLDEN_DIR", "TOLERANCES", "golden_case", "golden_checks", "regenerate", "tracked"]

#: Where the golden values live: one ``MODEL.npz`` per model.
GOLDEN_DIR = Path(__file__).with_name("golden")
#: Per check: the largest difference allowed, as a fraction of the size of what is compared (the largest |value|
#: of the reference's logits or running statistic, |loss|, or the largest |update| of the tensor).
TOLERANCES = {"logits": 1e-4, "loss": 1e-4, "running": 1e-4, "update": 1e-3}
#: Settings the digest leaves out: how a framework compiles what it computes or how the harness times it, not what
#: (MindSpore's graph compile level, inference's warm-up time); a new setting of that kind goes here, so that adding
#: it does not invalidate the golden values on file.
EXECUTION_ONLY = frozenset({"jit_level", "latency_warmup_s"})
#: The seed of the golden weights, batch and sampling noise.
SEED = 20261205
_CALIBRATION_IMAGES = 32


def golden_case(backend: str, model: str, device: str = "cpu") -> Case:
    """The case every golden check runs."""
    batch = 12 if get_model(model).repeats > 1 else 8
    s = Settings(width=0.125, image_size=64, num_classes=10, batch_size=batch, threads=1, seed=0, data="synthetic",
                 lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, weight_decay_on="weights",
                 label_smoothing=0.1, schedule="constant", lr_warmup_epochs=0.0, warmup=1, steps=1)
    return Case(name=f"golden-{backend}", model=model, backend=backend, device=device, settings=s)


def tracked(spec: ModelSpec) -> list[str]:
    """The tensors whose value after one step is checked: the stem, the first and last block, the first
    gather-excite and BAM tensors, the head; BatchNorm scales and shifts among them (weight decay must skip them)."""
    names = [t.name for t in layout(spec) if t.role in ("conv.weight", "conv.bias", "linear.weight", "linear.bias",
                                                         "bn.weight", "bn.bias")]
    last = f"layer4.{spec.layers[3] - 1}."
    wanted = ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv2.weight", "layer1.0.bn3.weight",
              f"{last}conv3.weight", f"{last}bn3.weight", f"{last}bn3.bias", "fc.weight", "fc.bias"]
    # (Not the biases of BAM's fc1 and spatial convs: a BatchNorm follows them, so their gradient is zero.)
    for part in (".ge.gather.", ".ge.excite.", ".channel.fc1.weight", ".channel.bn.", ".channel.fc2.",
                 ".spatial.conv3."):
        wanted += [n for n in names if part in n][:2]
    return [n for n in names if n in wanted]


@dataclass
class Golden:
    """One model's golden case, inputs and what the reference computes from them."""

    case: Case
    spec: ModelSpec
    arrays: tuple[np.ndarray, ...]  # images, labels[, noise]: one training batch
    weights: dict[str, np.ndarray]
    logits: np.ndarray
    running: dict[str, np.ndarray]
    loss: float

    @classmethod
    def make(cls, backend: str, model: str, device: str = "cpu") -> Golden:
        case = golden_case(backend, model, device)
        s = case.settings
        spec = get_model(model, width=s.width, num_classes=s.num_classes, image_size=s.image_size)
        rng = np.random.default_rng(SEED)
        size = (3, s.image_size, s.image_size)
        calibration = rng.standard_normal((_CALIBRATION_IMAGES, *size), dtype=np.float32)
        images = rng.standard_normal((s.batch_size, *size), dtype=np.float32)
        labels = rng.integers(0, s.num_classes, s.batch_size).astype(np.int64)
        noise = rng.random((s.batch_size, s.batch_size)).astype(np.float32) if spec.loss == "multigrain" else None
        weights = calibrated_weights(spec, SEED, calibration)
        train = forward(spec, weights, images, train=True)
        return cls(case, spec, (images, labels, *(() if noise is None else (noise,))), weights,
                   forward(spec, weights, images).logits, train.running,
                   training_loss(train, labels, loss_for(case), noise))

    def digest(self) -> str:
        """What the golden values depend on, exactly reproducible on any machine: the model's spec, the case's settings,
        the inputs and the seeded weights (not the calibrated running statistics, which go through BLAS and may
        differ in the last bit between CPUs; the tolerances absorb that)."""
        settings = {k: v for k, v in self.case.to_dict()["settings"].items() if k not in EXECUTION_ONLY}
        what = {"spec": dataclasses.asdict(self.spec), "settings": settings}
        h = hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode())
        seeded = seeded_weights(self.spec, SEED)
        for a in (*self.arrays, *(seeded[k] for k in sorted(seeded))):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


def relative(got: np.ndarray, want: np.ndarray, scale: np.ndarray | float) -> float:
    """max abs(got - want) over the largest abs(scale): a difference's size relative to what it compares."""
    size = float(np.max(np.abs(scale)))
    return float(np.max(np.abs(np.asarray(got, np.float64) - want))) / (size or 1.0)


def _worst(what: str, pairs: dict[str, tuple[Any, np.ndarray, Any]], tol: float) -> str:
    """Fail with the worst of ``name -> (got, want, scale)`` past ``tol``; else the worst difference."""
    missing = [n for n, (got, _, _) in pairs.items() if got is None]
    expect(not missing, f"{len(missing)} tensors missing from harness_get_weights: {', '.join(missing[:3])}")
    for n, (got, want, _) in pairs.items():
        expect(np.shape(got) == np.shape(want), f"{n}: shape {np.shape(got)}, expected {np.shape(want)}")
    rel = {n: relative(got, want, scale) for n, (got, want, scale) in pairs.items()}
    name = max(rel, key=lambda n: rel[n])
    bad = sum(r > tol for r in rel.values())
    got, want, _ = pairs[name]
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - want)))
    expect(bad == 0, f"{name}: max abs diff {diff:.3g} = {rel[name]:.2g} of {what} (tolerance {tol:g}); {bad} of "
                     f"{len(rel)} tensors outside")
    return f"worst {name}: {rel[name]:.1g} of {what}"


def contract_check(spec: ModelSpec, weights: dict[str, Any]) -> str:
    """The names, shapes and dtypes of a backend's weights against the contract's layout (names and shapes as every
    weights file is checked: :func:`harness.models.weights.check_weights`)."""
    check_weights(weights, shapes(spec), f"harness_get_weights for {spec.name}")
    dtypes = {t.name: np.dtype(t.dtype) for t in layout(spec)}
    for n, v in weights.items():
        want = dtypes.get(n, np.asarray(v).dtype)  # (an optional counter the contract does not list)
        expect(np.asarray(v).dtype == want, f"{n}: dtype {np.asarray(v).dtype}, the contract's is {want}")
    return f"{len(weights)} tensors"


def measure(hook: Any, g: Golden, dev: Any, train: bool = True) -> dict[str, Any]:
    """What the backend computes on the golden case: its fresh weights, eval logits of the golden weights and, with
    ``train``, the loss of one step and the weights after it."""
    start = time.perf_counter()
    net = hook.harness_build_model(case=g.case, device=dev)
    out: dict[str, Any] = {"fresh": hook.harness_get_weights(case=g.case, model=net)}
    if hook.harness_set_weights(case=g.case, model=net, weights=g.weights) is not True:
        raise HarnessError("harness_set_weights did not return True")
    out["logits"] = np.asarray(hook.harness_predict(case=g.case, model=net, device=dev, images=g.arrays[0]))
    if not train:
        return {**out, "seconds": time.perf_counter() - start}
    step = hook.harness_train_step(case=g.case, model=net, device=dev, total_steps=1, steps_per_epoch=1)
    out["loss"] = float(hook.harness_to_host(value=step(hook.harness_to_device(arrays=g.arrays, device=dev))))
    hook.harness_synchronize(device=dev)
    out["after"] = hook.harness_get_weights(case=g.case, model=net)
    return {**out, "seconds": time.perf_counter() - start}


def judge(checks: Checks, g: Golden, got: dict[str, Any], golden: dict[str, np.ndarray] | None, label: str) -> None:
    """The golden checks of one model's measurements; ``golden`` (``name -> value after the step``) None skips the
    update check (no values shipped)."""
    m, tol, after = g.case.model, TOLERANCES, got.get("after") or {}
    checks(f"{label} {m}: weight names, shapes, dtypes (contract)", lambda: contract_check(g.spec, got["fresh"]))
    checks(f"{label} {m}: eval logits vs NumPy reference (tolerance {tol['logits']:g} of the largest logit)",
           lambda: _worst("the largest logit", {"logits": (got["logits"], g.logits, g.logits)}, tol["logits"]))
    if "loss" not in got:
        return
    checks(f"{label} {m}: train-step loss vs NumPy reference (tolerance {tol['loss']:g} relative)",
           lambda: _worst("the loss", {"loss": (np.asarray(got["loss"]), np.asarray(g.loss), g.loss)}, tol["loss"]))
    checks(f"{label} {m}: BatchNorm running statistics after one step vs NumPy reference (tolerance "
           f"{tol['running']:g} of each tensor's max)", lambda: _worst(
               "its largest value", {n: (after.get(n), v, v) for n, v in g.running.items()}, tol["running"]))
    if golden is None:
        checks.results.append({"check": f"{label} {m}: weights after one step vs golden values", "status": "skip",
                               "detail": "the golden values could not be read (the check above says why)"})
        return
    checks(f"{label} {m}: {len(golden)} tensors after one step vs golden values (tolerance {tol['update']:g} of "
           f"each tensor's largest update)", lambda: _worst("its largest update", {
               n: (after.get(n), v, v - g.weights[n]) for n, v in golden.items()}, tol["update"]))


def load_golden(g: Golden) -> dict[str, np.ndarray]:
    """The shipped values after one step for ``g``'s model; an error when missing or made from other inputs."""
    path = GOLDEN_DIR / f"{g.case.model}.npz"
    if not path.is_file():
        raise HarnessError(f"no golden values for {g.case.model}: {path} is missing (`harness golden --write` "
                           f"makes them)")
    with np.load(path) as z:
        about = json.loads(str(z["about"]))
        if about["digest"] != g.digest():
            raise HarnessError(f"{path}: made from other inputs or settings than the golden case's (digest "
                               f"{about['digest']}, now {g.digest()}); regenerate with `harness golden --write`")
        return {k.removeprefix("after/"): z[k] for k in z.files if k.startswith("after/")}


def golden_checks(checks: Checks, hook: Any, name: str, info: dict[str, Any], device: str, dev: Any,
                  models: list[str]) -> None:
    """The golden checks of backend ``name`` (loaded as ``hook``, set up as ``dev`` on ``device``) for ``models``, in
    this process."""
    reason = ("it only loads exports: it builds no network of its own" if loads_exports_only(info) else
              "it declares supports.neutral_weights = false: it cannot hold weights in the neutral layout"
              if not supports_of(info)["neutral_weights"] else "")
    if reason:
        checks.results.append({"check": "golden checks", "status": "skip", "detail": reason})
        return
    train = "train" in scenarios_of(info)
    for model in models:
        start = time.perf_counter()
        g = Golden.make(name, model, device)
        took = time.perf_counter() - start
        golden = checks(f"golden {model}: golden values on file match the golden case",
                        lambda g=g, took=took: _Timed(load_golden(g), f"the reference computed in {took:.1f} s"))
        got = checks(f"golden {model}: build, set weights, predict" + (", one train step" if train else ""),
                     lambda g=g: _Timed(measure(hook, g, dev, train)))
        if got is not None:
            judge(checks, g, got, golden, "golden")


class _Timed(dict[str, Any]):
    """A check's value, shown in its row as ``note`` (or the seconds the measurement took)."""

    def __init__(self, value: dict[str, Any], note: str = "") -> None:
        super().__init__(value)
        self.note = note or f"{value['seconds']:.1f} s"

    def __str__(self) -> str:
        return self.note


def _side(backend: str, model: str, out: str) -> dict[str, Any]:
    """One backend's measurements of the golden case, in this process, written to ``out`` (.npz)."""
    hook = load_backend(backend).hook
    g = Golden.make(backend, model)
    got = measure(hook, g, hook.harness_setup(case=g.case))
    np.savez(out, logits=got["logits"], loss=np.float64(got["loss"]), **{f"fresh/{k}": v for k, v in got[
        "fresh"].items()}, **{f"after/{k}": v for k, v in got["after"].items()})
    info = hook.harness_backend_info()
    return {"backend": f"{backend} {info.get('version', '')}",
            "framework": f"{info.get('framework', '')} {info.get('framework_version', '')}"}


def _read_side(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        return {"logits": z["logits"], "loss": float(z["loss"]),
                **{part: {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(part + "/")}
                   for part in ("fresh", "after")}}


def regenerate(models: list[str], backends: tuple[str, str] = ("torch", "mindspore"), write: bool = False,
               timeout: float = 600) -> list[dict[str, str]]:
    """Run both backends on every model's golden case (each in a child process) and check each against the
    reference and the two against each other on the tracked tensors after the step; with ``write``, store the
    models where every check passed (the two sides' mean)."""
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="harness-golden-") as tmp:
        for model in models:
            g = Golden.make(backends[0], model)
            sides, made_by = [], []
            for b in backends:
                out = Path(tmp) / f"{model}-{b}.npz"
                made_by.append(run_json("harness.backends.golden", ["side", b, model, str(out)],
                                        what=f"golden: backend '{b}'", cwd=tmp, timeout=timeout))
                sides.append(_read_side(out))
            before = len(checks.results)
            for b, got in zip(backends, sides):
                judge(checks, g, got, {n: sides[1 - backends.index(b)]["after"][n] for n in tracked(g.spec)}, b)
            if write and all(r["status"] == "pass" for r in checks.results[before:]):
                _write(g, sides, made_by)
    return checks.results


def _write(g: Golden, sides: list[dict[str, Any]], made_by: list[dict[str, str]]) -> None:
    from harness import __version__

    about = {"digest": g.digest(), "model": g.case.model, "harness": __version__,
             "made_by": ["harness golden --write", *made_by],
             "rule": f"the mean of the two backends' values after one step, stored because both agreed with the "
                     f"NumPy reference (logits, loss, BatchNorm running statistics) and with each other on these "
                     f"tensors within the tolerances {json.dumps(TOLERANCES)}"}
    GOLDEN_DIR.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN_DIR / f"{g.case.model}.npz", about=np.asarray(json.dumps(about)), **{
        f"after/{n}": ((sides[0]["after"][n].astype(np.float64) + sides[1]["after"][n]) / 2).astype(np.float32)
        for n in tracked(g.spec)})


if __name__ == "__main__":
    report_errors(lambda: _side(*sys.argv[2:5]))
