"""PyTorch builders, one per block family of :class:`harness.models.ModelSpec`.

The ``resnet`` family is a bottleneck ResNet v1b (stride on the 3x3 conv) whose
module names, and so state-dict keys and shapes, equal timm's
``resnet50.gluon_in1k`` / torchvision's ``resnet50``: checkpoints load as they are.
Padding is symmetric (PyTorch's), the convention every backend reproduces.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.models import ModelSpec

__all__ = ["build_model", "Bottleneck", "ResNet"]


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, v1b) -> 1x1, BN after each, ReLU, identity or projected shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, expansion: int) -> None:
        super().__init__()
        out = planes * expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, spec.stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = spec.stem_width
        for i, (blocks, planes) in enumerate(zip(spec.layers, spec.widths)):
            layer = []
            for j in range(blocks):
                layer.append(Bottleneck(inplanes, planes, 2 if (j == 0 and i > 0) else 1, spec.expansion))
                inplanes = planes * spec.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.num_features = inplanes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, spec.num_classes)
        self._init(spec)

    def _init(self, spec: ModelSpec) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if spec.zero_init_last_bn:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of layer1..layer4 (for shape checks)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)[-1]
        return self.fc(torch.flatten(self.global_pool(x), 1))


BUILDERS = {"resnet": ResNet}


def build_model(spec: ModelSpec) -> nn.Module:
    try:
        builder = BUILDERS[spec.family]
    except KeyError:
        raise NotImplementedError(f"torch backend has no builder for block family '{spec.family}'") from None
    return builder(spec)
