"""The least a training backend writes: nine hooks, NumPy only (tests/test_minimal_backend.py).

Its model, under the name of the plain ResNet-50, is a linear softmax classifier on each channel's mean over the
four quadrants of the image (12 features), with the neutral names of a classifier head (``fc.weight``,
``fc.bias``). Its train step is SGD with momentum on the cross-entropy, at the core's learning-rate schedule, and
checkpoints through the core's :func:`harness.run.checkpoints.save_arrays`. Everything else (device probe and
setup, data, ``to_host``, environment, weights files) is the core's answer (:mod:`harness.backends.defaults`).
"""
from __future__ import annotations

import numpy as np

from harness import hookimpl
from harness.models.schedules import lr_at
from harness.models.weights import check_weights
from harness.run.checkpoints import load_arrays, save_arrays

MODEL = "gluon_resnet50_v1b"
FEATURES = 12


def _features(images: np.ndarray) -> np.ndarray:
    """Each channel's mean over the image's four quadrants: ``(N, 12)``."""
    n, c, h, w = images.shape
    x = images[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, 2, h // 2, 2, w // 2)
    return x.mean(axis=(3, 5), dtype=np.float64).reshape(n, c * 4)


def _logits(model: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    return _features(images) @ model["fc.weight"].T + model["fc.bias"]


@hookimpl
def harness_backend_info():
    return {"name": "minimal", "framework": "NumPy", "framework_version": np.__version__, "version": "0.1",
            "models": [MODEL], "devices": ["cpu"], "supports": {"checkpoint": True, "neutral_weights": False}}


@hookimpl
def harness_synchronize(device):
    return True  # NumPy returns when the work is done


@hookimpl
def harness_build_model(case, device):
    s = case.settings
    rng = np.random.default_rng(s.seed)
    return {"fc.weight": rng.normal(0.0, 0.01, (s.num_classes, FEATURES)), "fc.bias": np.zeros(s.num_classes)}


class TrainStep:
    """SGD with momentum on the softmax cross-entropy; the schedule position is the step count."""

    def __init__(self, case, model, total_steps, steps_per_epoch):
        self.case, self.model = case, model
        self.lrs = [lr_at(i, case.settings, total_steps, steps_per_epoch) for i in range(total_steps)]
        self.velocity = {k: np.zeros_like(v) for k, v in model.items()}
        self.count = 0

    def __call__(self, batch):
        images, labels = batch[0], batch[1]
        s, model = self.case.settings, self.model
        logits = _logits(model, images)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(labels))
        loss = float(-np.log(p[rows, labels]).mean())
        p[rows, labels] -= 1.0
        p /= len(labels)
        grads = {"fc.weight": p.T @ _features(images) + s.weight_decay * model["fc.weight"], "fc.bias": p.sum(axis=0)}
        lr = self.lrs[min(self.count, len(self.lrs) - 1)]
        self.count += 1
        for k, g in grads.items():
            self.velocity[k] = s.momentum * self.velocity[k] + g
            model[k] -= lr * self.velocity[k]
        return loss

    def save(self, path):
        return save_arrays(path, {**self.model, **{f"velocity.{k}": v for k, v in self.velocity.items()},
                                  "count": self.count})

    def load(self, path):
        shapes = {k: v.shape for k, v in self.model.items()}
        state = load_arrays(path, {**shapes, **{f"velocity.{k}": v for k, v in shapes.items()}, "count": ()},
                            what=f"{self.case.model} with {self.case.settings.num_classes} classes")
        for k in self.model:
            self.model[k][...] = state[k]
            self.velocity[k] = state[f"velocity.{k}"]
        self.count = int(state["count"])


@hookimpl
def harness_train_step(case, model, device, total_steps, steps_per_epoch):
    return TrainStep(case, model, total_steps, steps_per_epoch)


@hookimpl
def harness_eval_step(case, model, device):
    def step(batch):
        images, labels = batch[0], batch[1]
        real = labels >= 0  # the core pads the last batch with label -1
        top5 = np.argsort(-_logits(model, images), axis=1, kind="stable")[:, :5]
        hits = top5 == labels[:, None]
        return int((hits[:, 0] & real).sum()), int((hits.any(axis=1) & real).sum()), int(real.sum())
    return step


@hookimpl
def harness_to_device(arrays, device):
    return tuple(np.ascontiguousarray(a) for a in arrays)


@hookimpl
def harness_predict(case, model, device, images):
    return _logits(model, images).astype(np.float32)


@hookimpl
def harness_get_weights(case, model):
    return {k: v.copy() for k, v in model.items()}


@hookimpl
def harness_set_weights(case, model, weights):
    check_weights(weights, {k: v.shape for k, v in model.items()}, f"weights for {case.model}")
    for k in model:
        model[k][...] = weights[k]
    return True
