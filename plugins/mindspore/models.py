"""MindSpore builders, one per block family of :class:`harness.models.ModelSpec`.

Same structure and parameter names as the PyTorch backend (BatchNorm
gamma/beta/moving_mean/moving_variance map to weight/bias/running_mean/
running_var, see :mod:`harness.weights`). Padding is explicit and symmetric
(``pad_mode='pad'``), not MindSpore's default ``'same'`` (asymmetric for
stride 2), so both frameworks compute the same function. BatchNorm momentum
0.9 here is PyTorch's 0.1.
"""
from __future__ import annotations

from mindspore import nn
from mindspore.common.initializer import HeNormal

from harness.models import ModelSpec

__all__ = ["build_model", "Bottleneck", "ResNet", "BUILDERS"]

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # MindSpore convention: moving = momentum * moving + (1 - momentum) * batch


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, pad_mode="pad", padding=k // 2, has_bias=False,
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def _bn(c: int, zero: bool = False) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="zeros" if zero else "ones")


class Bottleneck(nn.Cell):
    """1x1 -> 3x3 (stride here, v1b) -> 1x1, BN after each, ReLU, identity or projected shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, expansion: int, zero_last: bool) -> None:
        super().__init__()
        out = planes * expansion
        self.conv1 = _conv(inplanes, planes, 1)
        self.bn1 = _bn(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = _bn(planes)
        self.conv3 = _conv(planes, out, 1)
        self.bn3 = _bn(out, zero=zero_last)
        self.relu = nn.ReLU()
        self.has_downsample = stride != 1 or inplanes != out
        if self.has_downsample:
            self.downsample = nn.SequentialCell([_conv(inplanes, out, 1, stride), _bn(out)])

    def construct(self, x):
        shortcut = x
        if self.has_downsample:
            shortcut = self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(nn.Cell):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if len(spec.layers) != 4:
            raise ValueError("the resnet family has four stages")
        self.conv1 = _conv(3, spec.stem_width, 7, 2)
        self.bn1 = _bn(spec.stem_width)
        self.relu = nn.ReLU()
        # Zero padding then a 'valid' pool equals PyTorch's MaxPool2d(3, 2, padding=1) here: the input follows
        # a ReLU (>= 0) and every window holds a real element. (pad_mode='pad' lowers to MaxPool3DWithArgmax,
        # which the ONNX exporter cannot convert.)
        self.pad = nn.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        inplanes = spec.stem_width
        for i, (blocks, planes) in enumerate(zip(spec.layers, spec.widths)):
            cells = []
            for j in range(blocks):
                cells.append(Bottleneck(inplanes, planes, 2 if (j == 0 and i > 0) else 1, spec.expansion,
                                        spec.zero_init_last_bn))
                inplanes = planes * spec.expansion
            setattr(self, f"layer{i + 1}", nn.SequentialCell(cells))
        self.num_features = inplanes
        self.fc = nn.Dense(inplanes, spec.num_classes)

    def stages(self, x):
        x = self.maxpool(self.pad(self.relu(self.bn1(self.conv1(x)))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5

    def construct(self, x):
        x = self.stages(x)[3]
        return self.fc(x.mean(axis=(2, 3)))


BUILDERS = {"resnet": ResNet}


def build_model(spec: ModelSpec) -> nn.Cell:
    try:
        builder = BUILDERS[spec.family]
    except KeyError:
        raise NotImplementedError(f"mindspore backend has no builder for block family '{spec.family}'") from None
    return builder(spec)
