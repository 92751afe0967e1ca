"""A numpy-only backend, registered from outside the repo's packaging (a
dist-info folder on PYTHONPATH), used to test the core without a framework.

Behaviour per case comes from the JSON in ``HARNESS_FAKE_PLAN``, keyed by the
case's seed: ``{"1": "raise", "2": "sigkill", "3": "hang", "4": "nodevice",
"5": "nan", "6": "slow"}``; ``"sigkill_once"`` kills the worker at step 7 the
first time only (a checkpointed case then resumes). Every hook call is appended to ``calls.log`` in the
case's working folder, so tests can check the order the core calls them in.

Its data are the core's host batches (:mod:`harness.data.host_batches`) moved with its own ``harness_to_device``;
synthetic epochs are 7 train batches and ``eval_batches`` (or 3) eval batches. Its train step is an object with
``save``/``load`` (``supports["checkpoint"]``) through the core's :func:`harness.run.checkpoints.save_arrays`; a
test turns that off with ``SUPPORTS["checkpoint"] = False``. It has no checkpoint file hooks: its weights files are
the core's neutral ``.npz``, and the environment fields the core knows are the core's.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np

from harness import DeviceUnavailable, hookimpl
from harness.data.host_batches import HostStream, device_stream
from harness.dist import place
from harness.models.specs import MODELS, get_model
from harness.run.checkpoints import load_arrays, save_arrays

#: What the fake takes: every value the shipped backends take (it trains nothing real, so it ignores them), its
#: export format, and its train step checkpoints.
SUPPORTS = {"optimizer": ["sgd", "thor"], "precision": ["fp32", "bf16", "fp16"],
            "amp_level": ["auto", "O0", "O1", "O2", "O3"], "mode": ["default", "eager", "compile", "graph", "pynative"],
            "export": ["npy"], "checkpoint": True, "profile": True, "neutral_weights": False}


def _plan(case) -> str:
    return json.loads(os.environ.get("HARNESS_FAKE_PLAN", "{}")).get(str(case.settings.seed), "")


def _log(what: str) -> None:
    with open("calls.log", "a") as f:
        f.write(what + "\n")


@hookimpl
def harness_backend_info():
    return {"name": "fake", "framework": "numpy", "framework_version": np.__version__, "version": "0.1",
            "devices": ["cpu"], "models": list(MODELS),
            "supports": {k: v if isinstance(v, bool) else list(v) for k, v in SUPPORTS.items()},
            # a test names a launcher a package of its own registers (tests/test_roles.py)
            **({"launcher": os.environ["HARNESS_FAKE_LAUNCHER"]} if os.environ.get("HARNESS_FAKE_LAUNCHER") else {})}


@hookimpl
def harness_probe_device(device):
    ok = device == "cpu"
    return {"available": ok, "reason": None if ok else f"no {device} in the fake backend",
            "model": "fake-cpu" if ok else None, "count": int(ok)}


@hookimpl
def harness_setup(case):
    _log("setup")
    with open("pid", "w") as f:
        f.write(str(os.getpid()))
    if case.device != "cpu" or _plan(case) == "nodevice":
        raise DeviceUnavailable(f"{case.device}: no such device in the fake backend")
    return {"name": case.device, "plan": _plan(case), "steps": 0}


@hookimpl
def harness_build_model(case, device):
    _log("build")
    if device["plan"] == "raise":
        raise RuntimeError("model exploded on purpose")
    rng = np.random.default_rng(case.settings.seed)
    return {"w": rng.normal(size=(4, case.settings.num_classes))}


class _Logged:
    """The core's device stream, logging ``start_at`` for the resume tests."""

    def __init__(self, stream):
        self.stream = stream

    def __len__(self):
        return len(self.stream)

    def __iter__(self):
        return iter(self.stream)

    def start_at(self, epoch, batch):
        _log(f"start_at {epoch} {batch}")
        self.stream.start_at(epoch, batch)


@hookimpl
def harness_data(case, split, device):
    _log(f"data {split}")
    s, spec, here = case.settings, get_model(case.model), place()
    host = HostStream(s, split, repeats=spec.repeats, mean=spec.mean, std=spec.std, rank=here.rank,
                      world=here.world, batches=7 if split == "train" else s.eval_batches or 3)
    return _Logged(device_stream(host, lambda arrays: harness_to_device(arrays=arrays, device=device)))


class TrainStep:
    """One fake optimisation step: the weights shrink by 0.1%, the loss of global step n is 1/n."""

    def __init__(self, model, device):
        self.model, self.device = model, device

    def __call__(self, batch):
        device, model = self.device, self.model
        device["steps"] += 1
        n = device["steps"]
        _log(f"step {n}")
        plan = device["plan"]
        if plan == "sigkill" and n == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        if plan == "sigkill_once" and n == 7 and not os.path.exists("killed"):  # once per case folder
            open("killed", "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        if plan == "hang" and n == 2:
            time.sleep(3600)
        if plan == "slow":
            time.sleep(0.3 if n == 1 else 0.02)
        if plan == "oom" and n == 2:
            raise type("OutOfMemoryError", (RuntimeError,), {})("out of memory on the fake device (tried 9 GiB)")
        if plan == "pause":  # a long step so a test can kill the process from outside
            time.sleep(0.2)
        if os.environ.get("HARNESS_FAKE_STEP_SLEEP"):  # a steady step time (regression-gating tests)
            time.sleep(float(os.environ["HARNESS_FAKE_STEP_SLEEP"]))
        model["w"] = model["w"] * 0.999  # an update, as a real step makes
        return float("nan") if plan == "nan" and n == 4 else 1.0 / n

    def save(self, path):
        _log(f"save_train_state {self.device['steps']}")
        return save_arrays(path, {"w": self.model["w"], "steps": self.device["steps"]})

    def load(self, path):
        state = load_arrays(path, {"w": self.model["w"].shape, "steps": ()}, what="the fake model")
        self.model["w"], self.device["steps"] = state["w"], int(state["steps"])
        _log(f"load_train_state {self.device['steps']}")


@hookimpl
def harness_train_step(case, model, device, total_steps, steps_per_epoch):
    _log(f"train_step total={total_steps} spe={steps_per_epoch}")
    return TrainStep(model, device)


@hookimpl
def harness_eval_step(case, model, device):
    def step(batch):
        _log("eval")
        _x, y = batch
        n = int(np.sum(y >= 0))  # the core pads the last batch with label -1
        if device["plan"] == "learn":  # top-1 grows 5 points per training step, up to 100%
            return (n * min(1.0, device["steps"] / 20), n, n)
        return (n // 2, n, n)

    return step


@hookimpl
def harness_to_host(value):
    _log("to_host")
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)


@hookimpl
def harness_synchronize(device):
    _log("sync")
    return True


#: The fake profiler's op table: shares of the window's wall time it reports per op (names as the frameworks
#: give them), leaving 10% unattributed.
FAKE_OPS = (("aten::mkldnn_convolution", "aten::conv2d", 0.5), ("BatchNorm", "Default/net-ResNet/bn1-BatchNorm2d", 0.2),
            ("aten::add_", "Optimizer.step#SGD.step", 0.1), ("ReLU", "", 0.1))


@hookimpl
def harness_profile(case, device, run_steps, folder):
    """A stand-in profiler: runs the window, writes a Chrome trace and reports :data:`FAKE_OPS` of its wall time
    (``HARNESS_FAKE_PLAN`` ``noprofiler``: the profiler cannot run here)."""
    _log("profile")
    if device["plan"] == "noprofiler":
        from harness import Unsupported
        raise Unsupported("profile: the fake profiler is switched off for this case")
    t0 = time.perf_counter()
    run_steps()
    wall = time.perf_counter() - t0
    trace = os.path.join(folder, "trace.json")
    with open(trace, "w") as f:
        json.dump([{"name": n, "ph": "X", "ts": 0, "dur": share * wall * 1e6} for n, _, share in FAKE_OPS], f)
    return {"profiler": "fake profiler", "trace": trace,
            "ops": [{"name": n, "scope": scope, "self_s": share * wall, "calls": 5} for n, scope, share in FAKE_OPS]}


@hookimpl
def harness_device_memory(device):
    return None


@hookimpl
def harness_export(case, model, device, fmt, path):
    np.save(path + ".npy", model["w"])
    return {"format": fmt, "path": os.path.basename(path) + ".npy", "bytes": os.path.getsize(path + ".npy"),
            "check": {"runtime": "numpy", "max_abs_diff": 0.0}}


@hookimpl
def harness_environment(case, device):
    # the core adds framework, framework_version, backend_version, device_model and device_count (from the info
    # and the probe); the fake adds what tests read
    return {"loaded_torch": "torch" in sys.modules, "cwd": os.getcwd()}


@hookimpl
def harness_to_device(arrays, device):
    return tuple(np.asarray(a) for a in arrays)


@hookimpl
def harness_predict(case, model, device, images):
    return (images.reshape(len(images), -1)[:, :4] @ model["w"]).astype(np.float32)


@hookimpl
def harness_get_weights(case, model):
    return {"w": model["w"].copy()}


@hookimpl
def harness_set_weights(case, model, weights):
    from harness.models.weights import check_weights
    check_weights(weights, {"w": model["w"].shape}, "weights")
    model["w"] = np.array(weights["w"])
    return True
