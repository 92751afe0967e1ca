"""The framework-neutral reference of every model variant: the forward pass and the training loss in NumPy.

This is the specification the backends are checked against (``harness check-backend``'s golden checks): where a
backend and this module differ, one of them has a bug. It reads the weights under the neutral names of
:func:`harness.models.contract.layout` and computes in float64 what :data:`harness.models.contract.FORMULAS` say.
It is slow (convolutions through strided windows) and meant for tiny widths and images.

:func:`forward` returns the logits, the pooled embedding and, in training mode (batch statistics), the BatchNorm
running statistics after the step; :func:`training_loss` the loss a case trains with (cross-entropy with its label
smoothing, or the Multigrain mixed loss given the sampling noise).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from harness.models.contract import BN_EPS, BN_MOMENTUM, GEM_EPS, seeded_weights
from harness.models.losses import LossChoice
from harness.models.multigrain import margin_loss, pair_indices, sample_negatives
from harness.models.specs import MULTIGRAIN_LOSS, ModelSpec, ge_kernel

__all__ = ["Output", "forward", "training_loss", "cross_entropy", "calibrated_weights", "conv2d"]


@dataclass
class Output:
    logits: np.ndarray
    embedding: np.ndarray
    #: In training mode: every BatchNorm's running mean and variance after this step, by neutral name.
    running: dict[str, np.ndarray] = field(default_factory=dict)
    #: The names of the tensors the pass read (every tensor of the layout but the optional ones).
    used: set[str] = field(default_factory=set)


def conv2d(x: np.ndarray, w: np.ndarray, stride: int = 1, pad: int = 0, dilation: int = 1,
           bias: np.ndarray | None = None) -> np.ndarray:
    """Cross-correlation of ``x`` (N, C, H, W) with ``w`` (O, C / groups, kh, kw), symmetric zero padding; the
    group count is ``C // w.shape[1]``."""
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    groups = c // cg
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1), (2, 3))
    win = win[:, :, ::stride, ::stride, ::dilation, ::dilation]  # (N, C, Ho, Wo, kh, kw)
    ho, wo = win.shape[2], win.shape[3]
    win = win.reshape(n, groups, cg, ho, wo, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, w.reshape(groups, o // groups, cg, kh, kw), optimize=True)
    out = out.reshape(n, o, ho, wo)
    return np.asarray(out if bias is None else out + bias[None, :, None, None])


def _max_pool(x: np.ndarray) -> np.ndarray:
    """3x3, stride 2, padding 1 that never wins the max."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), (2, 3))[:, :, ::2, ::2]
    out: np.ndarray = win.max(axis=(4, 5))
    return out


def _relu(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(x, 0.0))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * x))  # 1 / (1 + exp(-x)), without overflow
    return out


class _Net:
    """One pass: reads weights by neutral name (recording which), normalises by running or batch statistics."""

    def __init__(self, weights: Mapping[str, np.ndarray], train: bool) -> None:
        self.weights, self.train = weights, train
        self.used: set[str] = set()
        self.running: dict[str, np.ndarray] = {}

    def w(self, name: str) -> np.ndarray:
        self.used.add(name)
        return np.asarray(self.weights[name], dtype=np.float64)

    def conv(self, name: str, x: np.ndarray, stride: int = 1, pad: int = 0, dilation: int = 1,
             bias: bool = False) -> np.ndarray:
        return conv2d(x, self.w(f"{name}.weight"), stride, pad, dilation, self.w(f"{name}.bias") if bias else None)

    def linear(self, name: str, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x @ self.w(f"{name}.weight").T + self.w(f"{name}.bias")
        return out

    def bn(self, name: str, x: np.ndarray) -> np.ndarray:
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        if self.train:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            n = x.size // x.shape[1]
            for stat, batch in (("running_mean", mean), ("running_var", var * n / max(n - 1, 1))):
                self.running[f"{name}.{stat}"] = (1 - BN_MOMENTUM) * self.w(f"{name}.{stat}") + BN_MOMENTUM * batch
        else:
            mean, var = self.w(f"{name}.running_mean"), self.w(f"{name}.running_var")
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + BN_EPS)
        out: np.ndarray = y * self.w(f"{name}.weight").reshape(shape) + self.w(f"{name}.bias").reshape(shape)
        return out

    def bottleneck(self, p: str, x: np.ndarray, stride: int, spec: ModelSpec, stage: int) -> np.ndarray:
        shortcut = x
        if f"{p}.downsample.0.weight" in self.weights:
            shortcut = self.bn(f"{p}.downsample.1", self.conv(f"{p}.downsample.0", x, stride))
        y = _relu(self.bn(f"{p}.bn1", self.conv(f"{p}.conv1", x)))
        y = _relu(self.bn(f"{p}.bn2", self.conv(f"{p}.conv2", y, stride, pad=1)))
        y = self.bn(f"{p}.bn3", self.conv(f"{p}.conv3", y))
        if spec.ge:
            y = self.gather_excite(f"{p}.ge", y, spec, stage)
        return _relu(y + shortcut)

    def gather_excite(self, p: str, y: np.ndarray, spec: ModelSpec, stage: int) -> np.ndarray:
        if spec.ge == "theta-minus":
            g = y.mean(axis=(2, 3), keepdims=True)
        else:
            g, i = y, 0
            if stage == 1:
                g, i = self.bn(f"{p}.gather.1", self.conv(f"{p}.gather.0", g, 2, pad=1)), 2
            assert g.shape[-1] == ge_kernel(spec, stage), "the gather kernel covers the whole map"
            g = self.bn(f"{p}.gather.{i + 1}", self.conv(f"{p}.gather.{i}", g))
            if spec.ge == "theta-plus":
                g = self.conv(f"{p}.excite.2", _relu(self.conv(f"{p}.excite.0", g)))
        return np.asarray(y * _sigmoid(g))

    def bam(self, p: str, x: np.ndarray, spec: ModelSpec) -> np.ndarray:
        c = self.linear(f"{p}.channel.fc1", x.mean(axis=(2, 3)))
        c = self.linear(f"{p}.channel.fc2", _relu(self.bn(f"{p}.channel.bn", c)))
        s = _relu(self.bn(f"{p}.spatial.bn0", self.conv(f"{p}.spatial.conv0", x, bias=True)))
        d = spec.bam_dilation
        for i in (1, 2):
            s = _relu(self.bn(f"{p}.spatial.bn{i}", self.conv(f"{p}.spatial.conv{i}", s, pad=d, dilation=d,
                                                               bias=True)))
        s = self.conv(f"{p}.spatial.conv3", s, bias=True)
        return x * (1.0 + _sigmoid(c[:, :, None, None] * s))


def forward(spec: ModelSpec, weights: Mapping[str, np.ndarray], images: np.ndarray, train: bool = False) -> Output:
    """The network of ``spec`` on ``images`` (N, 3, H, W) with ``weights``; ``train`` normalises by the batch's
    statistics and reports the running statistics after the step."""
    net = _Net(weights, train)
    x = _max_pool(_relu(net.bn("bn1", net.conv("conv1", np.asarray(images, np.float64), 2, pad=3))))
    for i, blocks in enumerate(spec.layers, start=1):
        for j in range(blocks):
            x = net.bottleneck(f"layer{i}.{j}", x, 2 if (j == 0 and i > 1) else 1, spec, i)
        if i in spec.bam_stages:
            x = net.bam(f"bam{i}", x, spec)
    if spec.pool == "gem":
        p = float(net.w("global_pool.p"))
        emb = (np.maximum(x, GEM_EPS) ** p).mean(axis=(2, 3)) ** (1.0 / p)
    else:
        emb = x.mean(axis=(2, 3))
    return Output(logits=net.linear("fc", emb), embedding=emb, running=net.running, used=net.used)


def cross_entropy(logits: np.ndarray, labels: np.ndarray, loss: LossChoice) -> float:
    """Mean cross-entropy of ``logits`` against ``labels`` with the case's label smoothing (PyTorch's convention,
    or the explicit (on, off) targets of the other conventions)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    classes = z.shape[1]
    if loss.targets is None:
        eps = loss.label_smoothing
        on, off = 1.0 - eps + eps / classes, eps / classes
    else:
        on, off = loss.targets
    target = np.full(z.shape, off)
    target[np.arange(len(labels)), labels] = on
    return float(-(target * logp).sum(axis=1).mean())


def training_loss(out: Output, labels: np.ndarray, loss: LossChoice, noise: np.ndarray | None = None,
                  beta: float = MULTIGRAIN_LOSS.beta_init) -> float:
    """The loss of one training step from a training-mode :func:`forward`: the cross-entropy, or with
    ``loss.multigrain`` ``lam * CE + (1 - lam) * margin`` on the normalised embedding with the negatives the
    uniform ``noise`` (B, B) selects (:mod:`harness.models.multigrain`)."""
    ce = cross_entropy(out.logits, labels, loss)
    mg = loss.multigrain
    if mg is None:
        return ce
    if noise is None:
        raise ValueError("the Multigrain loss needs the sampling noise")
    emb = out.embedding / (np.linalg.norm(out.embedding, axis=1, keepdims=True) + mg.embedding_eps)
    anchors, positives = pair_indices(len(emb), loss.repeats)
    negatives = sample_negatives(emb, loss.repeats, noise, mg)
    return mg.lam * ce + (1.0 - mg.lam) * margin_loss(emb, anchors, positives, negatives, beta, mg)


def calibrated_weights(spec: ModelSpec, seed: int, images: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`~harness.models.contract.seeded_weights` with every running statistic set to the batch statistics of
    ``images`` (running mean the batch mean, running variance the unbiased batch variance), as a trained network
    has them: activations then stay O(1) in eval mode, so a relative tolerance measures what it should."""
    weights = seeded_weights(spec, seed)
    # Batch statistics do not depend on the running ones, so one training pass gives them all: undo its update.
    for name, value in forward(spec, weights, images, train=True).running.items():
        old = weights[name].astype(np.float64)
        weights[name] = ((value - (1 - BN_MOMENTUM) * old) / BN_MOMENTUM).astype(np.float32)
    return weights
