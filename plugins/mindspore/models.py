"""MindSpore builders, one per block family of :class:`harness.models.specs.ModelSpec`.

Same structure and parameter names as the PyTorch backend (BatchNorm
gamma/beta/moving_mean/moving_variance map to weight/bias/running_mean/
running_var, see :mod:`harness.models.weights`). Padding is explicit and symmetric
(``pad_mode='pad'``), not MindSpore's default ``'same'`` (asymmetric for
stride 2), so both frameworks compute the same function. BatchNorm momentum
0.9 here is PyTorch's 0.1.
"""
from __future__ import annotations

from typing import Any

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import HeNormal, HeUniform, Normal

from harness.models import contract
from harness.models.specs import MULTIGRAIN_LOSS, ModelSpec, build_with, ge_kernel

__all__ = ["build_model", "Bottleneck", "ResNet", "BUILDERS", "BAM", "GatherExcite", "GeM", "onnx_stem_pool"]

BN_EPS = contract.BN_EPS
#: The contract's momentum in MindSpore's convention: moving = momentum * moving + (1 - momentum) * batch.
BN_MOMENTUM = 1.0 - contract.BN_MOMENTUM


def _init(kind: str) -> Any:
    return HeUniform(nonlinearity="relu") if kind == "he_uniform" else HeNormal(mode="fan_out", nonlinearity="relu")


def _conv(cin: int, cout: int, k: int, stride: int = 1, init: str = "fan_out", *, bias: bool = False,
          dilation: int = 1, group: int = 1, pad: int | None = None) -> nn.Conv2d:
    pad = dilation * (k // 2) if pad is None else pad
    return nn.Conv2d(cin, cout, k, stride=stride, pad_mode="pad", padding=pad, dilation=dilation, group=group,
                     has_bias=bias, weight_init=_init(init), bias_init="zeros")


def _bn(c: int, zero: bool = False) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="zeros" if zero else "ones")


class GatherExcite(nn.Cell):
    """GENet: ``x * sigmoid(excite(gather(x)))`` (see the PyTorch backend for the variants)."""

    def __init__(self, channels: int, variant: str, kernel: int, first_stage: bool, reduction: int,
                 init: str) -> None:
        super().__init__()
        self.has_gather = variant in ("theta", "theta-plus")
        self.has_excite = variant == "theta-plus"
        if self.has_gather:
            cells = []
            if first_stage:
                cells += [_conv(channels, channels, 3, 2, init), _bn(channels)]
            cells += [_conv(channels, channels, kernel, 1, init, group=channels, pad=0), _bn(channels)]
            self.gather = nn.SequentialCell(cells)
        if self.has_excite:
            hidden = max(1, channels // reduction)
            self.excite = nn.SequentialCell([_conv(channels, hidden, 1, 1, init), nn.ReLU(),
                                             _conv(hidden, channels, 1, 1, init)])
        self.sigmoid = nn.Sigmoid()

    def construct(self, x):
        if self.has_gather:
            g = self.gather(x)
        else:
            g = x.mean(axis=(2, 3), keep_dims=True)
        if self.has_excite:
            g = self.excite(g)
        return x * self.sigmoid(g)


class GeM(nn.Cell):
    """Generalised-mean pooling ``mean(clamp(x, 1e-6) ** p) ** (1 / p)`` over H, W; ``p`` is a
    non-trainable parameter (saved with the weights, as PyTorch's buffer). ``p = 1`` is average pooling."""

    def __init__(self, p: float, eps: float = contract.GEM_EPS) -> None:
        super().__init__()
        self.p = Parameter(Tensor(float(p), ms.float32), name="p", requires_grad=False)
        self.eps = Tensor(eps, ms.float32)

    def construct(self, x):
        return ops.pow(ops.pow(ops.maximum(x, self.eps), self.p).mean(axis=(2, 3)), ops.reciprocal(self.p))


class _ChannelGate(nn.Cell):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Dense(channels, hidden, weight_init=Normal(0.01), bias_init="zeros")
        self.bn = nn.BatchNorm1d(hidden, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.fc2 = nn.Dense(hidden, channels, weight_init=Normal(0.01), bias_init="zeros")
        self.relu = nn.ReLU()

    def construct(self, x):
        v = self.fc2(self.relu(self.bn(self.fc1(x.mean(axis=(2, 3))))))
        return v.reshape((v.shape[0], v.shape[1], 1, 1))


class _SpatialGate(nn.Cell):
    def __init__(self, channels: int, hidden: int, dilation: int) -> None:
        super().__init__()
        self.conv0 = _conv(channels, hidden, 1, 1, "he_uniform", bias=True)
        self.bn0 = _bn(hidden)
        self.conv1 = _conv(hidden, hidden, 3, 1, "he_uniform", bias=True, dilation=dilation)
        self.bn1 = _bn(hidden)
        self.conv2 = _conv(hidden, hidden, 3, 1, "he_uniform", bias=True, dilation=dilation)
        self.bn2 = _bn(hidden)
        self.conv3 = _conv(hidden, 1, 1, 1, "he_uniform", bias=True)
        self.relu = nn.ReLU()

    def construct(self, x):
        s = self.relu(self.bn0(self.conv0(x)))
        s = self.relu(self.bn1(self.conv1(s)))
        s = self.relu(self.bn2(self.conv2(s)))
        return self.conv3(s)


class BAM(nn.Cell):
    """Bottleneck Attention Module: ``x * (1 + sigmoid(channel(x) * spatial(x)))``."""

    def __init__(self, channels: int, reduction: int, dilation: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = _ChannelGate(channels, hidden)
        self.spatial = _SpatialGate(channels, hidden, dilation)
        self.sigmoid = nn.Sigmoid()

    def construct(self, x):
        return x * (1 + self.sigmoid(self.channel(x) * self.spatial(x)))


def onnx_stem_pool() -> nn.Cell:
    """The stem's max-pool as an ONNX export writes it: zero padding, then a 'valid' 3x3/2 pool.

    It equals the model's own pool here (the input follows a ReLU, so it is >= 0, and every window holds a real
    element), but is not what the model trains with: MindSpore lowers the padded pool (``pad_mode='pad'``) to
    ``MaxPool3DWithArgmax``, which the ONNX exporter cannot convert, while the pad-then-pool pair took ~8% longer
    per ResNet-50 training step on CPU (224 px, batch 16: 4.96 s against 4.56 s a step, measured side by side).
    """
    return nn.SequentialCell([nn.Pad(((0, 0), (0, 0), (1, 1), (1, 1))),
                              nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")])


class Bottleneck(nn.Cell):
    """1x1 -> 3x3 (stride here, v1b) -> 1x1, BN after each, ReLU, identity or projected shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, expansion: int, zero_last: bool, init: str,
                 ge: GatherExcite | None = None) -> None:
        super().__init__()
        out = planes * expansion
        self.conv1 = _conv(inplanes, planes, 1, 1, init)
        self.bn1 = _bn(planes)
        self.conv2 = _conv(planes, planes, 3, stride, init)
        self.bn2 = _bn(planes)
        self.conv3 = _conv(planes, out, 1, 1, init)
        self.bn3 = _bn(out, zero=zero_last)
        self.relu = nn.ReLU()
        self.has_ge = ge is not None
        if ge is not None:
            self.ge = ge
        self.has_downsample = stride != 1 or inplanes != out
        if self.has_downsample:
            self.downsample = nn.SequentialCell([_conv(inplanes, out, 1, stride, init), _bn(out)])

    def construct(self, x):
        shortcut = x
        if self.has_downsample:
            shortcut = self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.has_ge:
            y = self.ge(y)
        return self.relu(y + shortcut)


class ResNet(nn.Cell):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if len(spec.layers) != 4:
            raise ValueError("the resnet family has four stages")
        self.conv1 = _conv(3, spec.stem_width, 7, 2, spec.init)
        self.bn1 = _bn(spec.stem_width)
        self.relu = nn.ReLU()
        # PyTorch's MaxPool2d(3, 2, padding=1). An ONNX export swaps in onnx_stem_pool() (see there).
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        inplanes = spec.stem_width
        for i, (blocks, planes) in enumerate(zip(spec.layers, spec.widths)):
            cells = []
            out = planes * spec.expansion
            for j in range(blocks):
                ge = (GatherExcite(out, spec.ge, ge_kernel(spec, i + 1), i == 0, spec.reduction, spec.init)
                      if spec.ge else None)
                cells.append(Bottleneck(inplanes, planes, 2 if (j == 0 and i > 0) else 1, spec.expansion,
                                        spec.zero_init_last_bn, spec.init, ge))
                inplanes = out
            setattr(self, f"layer{i + 1}", nn.SequentialCell(cells))
        # BAM between stages (after layer1..3 for resnet50_bam); stage outputs are taken before it.
        self.has_bam = tuple(i + 1 in spec.bam_stages for i in range(4))
        for i in spec.bam_stages:
            setattr(self, f"bam{i}", BAM(spec.widths[i - 1] * spec.expansion, spec.reduction, spec.bam_dilation))
        self.num_features = inplanes
        self.has_gem = spec.pool == "gem"
        if self.has_gem:
            self.global_pool = GeM(spec.gem_p)
        self.norm_eps = MULTIGRAIN_LOSS.embedding_eps
        dense_init = Normal(0.01) if spec.init == "he_uniform" else None
        self.fc = (nn.Dense(inplanes, spec.num_classes, weight_init=dense_init, bias_init="zeros") if dense_init
                   else nn.Dense(inplanes, spec.num_classes))

    def stages(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        x = self.bam1(c2) if self.has_bam[0] else c2
        c3 = self.layer2(x)
        x = self.bam2(c3) if self.has_bam[1] else c3
        c4 = self.layer3(x)
        x = self.bam3(c4) if self.has_bam[2] else c4
        c5 = self.layer4(x)
        return c2, c3, c4, c5

    def embedding(self, x):
        """The pooled features ``(N, C)`` the classifier reads (GeM output for Multigrain)."""
        x = self.stages(x)[3]
        if self.has_gem:
            return self.global_pool(x)
        return x.mean(axis=(2, 3))

    def outputs(self, x):
        """``(embedding, logits, normalized_embedding)``; the last is ``e / (||e||_2 + 1e-6)``."""
        e = self.embedding(x)
        norm = ops.sqrt((e * e).sum(axis=1, keepdims=True))
        return e, self.fc(e), e / (norm + self.norm_eps)

    def construct(self, x):
        return self.fc(self.embedding(x))


BUILDERS = {"resnet": ResNet}


def build_model(spec: ModelSpec) -> nn.Cell:
    return build_with(BUILDERS, spec, "mindspore")
