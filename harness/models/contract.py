"""What every backend's network must hold and compute, written down once from the model registry.

:func:`layout` lists, for a :class:`~harness.models.specs.ModelSpec`, every tensor of the network under its neutral
name (PyTorch's state-dict name), with its shape, dtype, role and initialisation rule, in the order PyTorch
registers them. The numbers every backend shares (BatchNorm eps and momentum, the running-variance convention,
the GeM clamp) are the constants below; the formulas of the blocks are :data:`FORMULAS`. The NumPy reference of
:mod:`harness.models.reference` computes the network from exactly these tensors, and ``harness models MODEL
--weights`` (and the generated docs page ``docs/model-contract.md``) print them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from harness.models.specs import ModelSpec, ge_kernel

__all__ = ["BN_EPS", "BN_MOMENTUM", "GEM_EPS", "Tensor", "layout", "shapes", "FORMULAS", "INIT_RULES",
           "seeded_weights"]

#: BatchNorm epsilon, added to the variance under the square root, in every BatchNorm of every variant.
BN_EPS = 1e-5
#: BatchNorm momentum in PyTorch's convention: ``running = (1 - m) * running + m * batch``; the batch variance that
#: enters ``running_var`` is the unbiased one (divided by ``n - 1``), the one that normalises is the biased one.
#: (MindSpore writes the same rule as ``momentum = 1 - m = 0.9``.)
BN_MOMENTUM = 0.1
#: GeM clamps its input below at this value before the power.
GEM_EPS = 1e-6


@dataclass(frozen=True)
class Tensor:
    """One tensor of a network: neutral name, shape, dtype, role, initialisation rule (a key of
    :data:`INIT_RULES`), and whether a backend may leave it out (``num_batches_tracked``)."""

    name: str
    shape: tuple[int, ...]
    role: str
    init: str
    dtype: str = "float32"
    optional: bool = False


#: The initialisation rules by key (fan_in / fan_out count a conv's kernel area; groups divide fan_in only).
INIT_RULES = {
    "kaiming_normal_fan_out": "N(0, sqrt(2 / fan_out)), fan_out = out_channels * kh * kw",
    "kaiming_uniform_fan_in": "U(-b, b), b = sqrt(6 / fan_in), fan_in = in_channels / groups * kh * kw",
    "linear_default": "U(-1/sqrt(in_features), 1/sqrt(in_features)) (PyTorch's nn.Linear default, weight and bias)",
    "normal_0.01": "N(0, 0.01)",
    "zeros": "0",
    "ones": "1",
    "constant": "the spec's value (not trained, saved with the weights)",
    "count": "0 (steps of running-statistics updates; optional, PyTorch only)",
}

FORMULAS = {
    "bottleneck": "y = relu(bn1(conv1x1(x))); y = relu(bn2(conv3x3_stride_s(y))); y = bn3(conv1x1(y)); "
                  "[y = ge(y)]; out = relu(y + shortcut), shortcut = x or bn(conv1x1_stride_s(x)) when the "
                  "stride or width changes. The stride sits on the 3x3 conv (v1b); the first block of stages 2-4 "
                  "has stride 2.",
    "stem": "relu(bn(conv7x7_stride2_pad3(x))) then max-pool 3x3 stride 2 pad 1 (padding never wins the max).",
    "batchnorm": f"train: (x - mean_b) / sqrt(var_b + eps) * weight + bias with the biased batch variance over "
                 f"(N, H, W); running = (1 - m) * running + m * batch with the unbiased variance; eval: the running "
                 f"statistics. eps = {BN_EPS:g}, m = {BN_MOMENTUM:g}.",
    "ge_theta_minus": "g = mean over H, W of y; out = y * sigmoid(g).",
    "ge_theta": "g = bn(depthwise_conv_k(y)) with k the full extent of the map (no padding, so g is 1x1); in "
                "stage 1 first bn(conv3x3_stride2_pad1(y)); out = y * sigmoid(g).",
    "ge_theta_plus": "as theta, then g = conv1x1(relu(conv1x1(g))) (C -> C / reduction -> C, no bias, no BN).",
    "bam": "c = fc2(relu(bn1d(fc1(mean over H, W of x)))) (C -> C / reduction -> C); s = relu(bn0(conv1x1(x))); "
           "s = relu(bn_i(conv3x3_dilation_d_pad_d(s))) for i = 1, 2; s = conv1x1(s) (-> 1 channel, bias); "
           "out = x * (1 + sigmoid(c * s)); it follows the listed stages, whose outputs are taken before it.",
    "avg": "global average over H, W.",
    "gem": f"(mean over H, W of clamp(x, {GEM_EPS:g}) ** p) ** (1 / p), p = global_pool.p.",
    "head": "logits = embedding @ fc.weight.T + fc.bias; Multigrain also uses embedding / (||embedding|| + 1e-6).",
}


def _bn(prefix: str, c: int, weight_init: str = "ones") -> Iterator[Tensor]:
    yield Tensor(f"{prefix}.weight", (c,), "bn.weight", weight_init)
    yield Tensor(f"{prefix}.bias", (c,), "bn.bias", "zeros")
    yield Tensor(f"{prefix}.running_mean", (c,), "bn.running_mean", "zeros")
    yield Tensor(f"{prefix}.running_var", (c,), "bn.running_var", "ones")
    yield Tensor(f"{prefix}.num_batches_tracked", (), "bn.num_batches_tracked", "count", "int64", True)


def _conv(name: str, cout: int, cin: int, k: int, spec: ModelSpec, groups: int = 1, bias: bool = False
          ) -> Iterator[Tensor]:
    init = "kaiming_uniform_fan_in" if spec.init == "he_uniform" else "kaiming_normal_fan_out"
    yield Tensor(f"{name}.weight", (cout, cin // groups, k, k), "conv.weight", init)
    if bias:
        yield Tensor(f"{name}.bias", (cout,), "conv.bias", "zeros")


def _linear(name: str, cout: int, cin: int, spec: ModelSpec) -> Iterator[Tensor]:
    init = "normal_0.01" if spec.init == "he_uniform" else "linear_default"
    yield Tensor(f"{name}.weight", (cout, cin), "linear.weight", init)
    yield Tensor(f"{name}.bias", (cout,), "linear.bias", "zeros" if spec.init == "he_uniform" else init)


def _ge(p: str, c: int, spec: ModelSpec, stage: int) -> Iterator[Tensor]:
    if spec.ge in ("theta", "theta-plus"):
        i = 0
        if stage == 1:
            yield from _conv(f"{p}.gather.0", c, c, 3, spec)
            yield from _bn(f"{p}.gather.1", c)
            i = 2
        yield from _conv(f"{p}.gather.{i}", c, c, ge_kernel(spec, stage), spec, groups=c)
        yield from _bn(f"{p}.gather.{i + 1}", c)
    if spec.ge == "theta-plus":
        hidden = max(1, c // spec.reduction)
        yield from _conv(f"{p}.excite.0", hidden, c, 1, spec)
        yield from _conv(f"{p}.excite.2", c, hidden, 1, spec)


def _bam(p: str, c: int, spec: ModelSpec) -> Iterator[Tensor]:
    hidden = max(1, c // spec.reduction)
    yield from _linear(f"{p}.channel.fc1", hidden, c, spec)
    yield from _bn(f"{p}.channel.bn", hidden)
    yield from _linear(f"{p}.channel.fc2", c, hidden, spec)
    yield from _conv(f"{p}.spatial.conv0", hidden, c, 1, spec, bias=True)
    yield from _bn(f"{p}.spatial.bn0", hidden)
    for i in (1, 2):
        yield from _conv(f"{p}.spatial.conv{i}", hidden, hidden, 3, spec, bias=True)
        yield from _bn(f"{p}.spatial.bn{i}", hidden)
    yield from _conv(f"{p}.spatial.conv3", 1, hidden, 1, spec, bias=True)


def layout(spec: ModelSpec) -> list[Tensor]:
    """Every tensor of ``spec``'s network, in PyTorch's registration order."""
    out = [*_conv("conv1", spec.stem_width, 3, 7, spec), *_bn("bn1", spec.stem_width)]
    inplanes = spec.stem_width
    last_bn = "zeros" if spec.zero_init_last_bn else "ones"
    for i, (blocks, planes) in enumerate(zip(spec.layers, spec.widths), start=1):
        width = planes * spec.expansion
        for j in range(blocks):
            p = f"layer{i}.{j}"
            out += [*_conv(f"{p}.conv1", planes, inplanes, 1, spec), *_bn(f"{p}.bn1", planes),
                    *_conv(f"{p}.conv2", planes, planes, 3, spec), *_bn(f"{p}.bn2", planes),
                    *_conv(f"{p}.conv3", width, planes, 1, spec), *_bn(f"{p}.bn3", width, last_bn)]
            if spec.ge:
                out += _ge(f"{p}.ge", width, spec, i)
            if j == 0 and (i > 1 or inplanes != width):
                out += [*_conv(f"{p}.downsample.0", width, inplanes, 1, spec), *_bn(f"{p}.downsample.1", width)]
            inplanes = width
        if i in spec.bam_stages:
            out += _bam(f"bam{i}", width, spec)
    if spec.pool == "gem":
        out.append(Tensor("global_pool.p", (), "gem.p", "constant"))
    out += _linear("fc", spec.num_classes, inplanes, spec)
    return out


def shapes(spec: ModelSpec, optional: bool = False) -> dict[str, tuple[int, ...]]:
    """Neutral name -> shape of every tensor ``spec``'s network holds (the optional ones with ``optional``)."""
    return {t.name: t.shape for t in layout(spec) if optional or not t.optional}


def seeded_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Fixed weights for checks, drawn from ``seed`` (NumPy's PCG64), not the training initialisation: every
    BatchNorm scale and shift, conv bias and running statistic away from its initial constant, so that no part
    of the network is silenced (a zero-initialised last BN would hide its whole branch). Convs are
    N(0, sqrt(2 / fan_in)), linears N(0, 1 / sqrt(in)), BN weight U(0.5, 1.5) but U(0.1, 0.3) for the last BN of a
    residual branch (``bn3``), bias N(0, 0.1), running mean N(0, 0.1), running variance U(0.5, 1.5).

    The small ``bn3`` scales keep the deep network well conditioned: every branch adds a correction to its
    shortcut instead of doubling the signal, so float32 rounding moves the logits by ~1e-6 of their size (measured
    on all six variants at width 0.125, 32 px; with U(0.5, 1.5) there it was up to 1e-4, and train-mode BatchNorm
    over a 1x1 stage-4 map amplified it to 1e-3), and a relative tolerance of 1e-4 separates rounding from a bug.
    :func:`harness.models.reference.calibrated_weights` then sets the running statistics to those of a batch, as a
    trained network has them."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in layout(spec):
        if t.optional:
            continue
        if t.role == "conv.weight":
            fan_in = int(np.prod(t.shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), t.shape)
        elif t.role == "linear.weight":
            value = rng.normal(0.0, 1.0 / np.sqrt(t.shape[1]), t.shape)
        elif t.role == "bn.weight" and t.name.endswith(".bn3.weight"):
            value = rng.uniform(0.1, 0.3, t.shape)
        elif t.role in ("bn.weight", "bn.running_var"):
            value = rng.uniform(0.5, 1.5, t.shape)
        elif t.role == "gem.p":
            value = np.asarray(spec.gem_p)
        else:  # biases, running means
            value = rng.normal(0.0, 0.1, t.shape)
        out[t.name] = np.asarray(value, dtype=np.float32)
    return out
