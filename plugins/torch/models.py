"""PyTorch builders, one per block family of :class:`harness.models.specs.ModelSpec`.

The ``resnet`` family is a bottleneck ResNet v1b (stride on the 3x3 conv) whose
module names, and so state-dict keys and shapes, equal timm's
``resnet50.gluon_in1k`` / torchvision's ``resnet50``: checkpoints load as they are.
Padding is symmetric (PyTorch's), the convention every backend reproduces.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.models.contract import BN_EPS, BN_MOMENTUM, GEM_EPS
from harness.models.specs import MULTIGRAIN_LOSS, ModelSpec, build_with, ge_kernel

__all__ = ["build_model", "Bottleneck", "ResNet", "GeM", "BUILDERS", "unwrap"]


def _bn2d(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the model contract's eps and momentum (PyTorch's convention, the contract's)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _bn1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class GeM(nn.Module):
    """Generalised-mean pooling ``mean(clamp(x, 1e-6) ** p) ** (1 / p)`` over H, W with a fixed ``p``
    (a buffer, saved with the weights but not trained). ``p = 1`` is average pooling."""

    p: torch.Tensor

    def __init__(self, p: float, eps: float = GEM_EPS) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


class GatherExcite(nn.Module):
    """GENet: ``x * sigmoid(excite(gather(x)))``.

    theta-minus gathers with a global mean (no parameters); theta with a depthwise conv whose
    kernel covers the whole map, then BN (stage 1 first halves the map with a full 3x3/2 conv + BN);
    theta-plus adds a 1x1 -> ReLU -> 1x1 excite MLP (no bias, no BN).
    """

    def __init__(self, channels: int, variant: str, kernel: int, first_stage: bool, reduction: int) -> None:
        super().__init__()
        self.gather: nn.Module | None = None
        self.excite: nn.Module | None = None
        if variant in ("theta", "theta-plus"):
            layers: list[nn.Module] = []
            if first_stage:
                layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False), _bn2d(channels)]
            layers += [nn.Conv2d(channels, channels, kernel, groups=channels, bias=False), _bn2d(channels)]
            self.gather = nn.Sequential(*layers)
        if variant == "theta-plus":
            hidden = max(1, channels // reduction)
            self.excite = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                        nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean((2, 3), keepdim=True) if self.gather is None else self.gather(x)
        if self.excite is not None:
            g = self.excite(g)
        return x * torch.sigmoid(g)


class BAM(nn.Module):
    """Bottleneck Attention Module: ``x * (1 + sigmoid(channel(x) * spatial(x)))``."""

    def __init__(self, channels: int, reduction: int, dilation: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.ModuleDict({"fc1": nn.Linear(channels, hidden), "bn": _bn1d(hidden),
                                      "fc2": nn.Linear(hidden, channels)})
        spatial: dict[str, nn.Module] = {"conv0": nn.Conv2d(channels, hidden, 1), "bn0": _bn2d(hidden)}
        for i in (1, 2):
            spatial[f"conv{i}"] = nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation)
            spatial[f"bn{i}"] = _bn2d(hidden)
        spatial["conv3"] = nn.Conv2d(hidden, 1, 1)
        self.spatial = nn.ModuleDict(spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, sp = self.channel, self.spatial
        ch = c["fc2"](torch.relu(c["bn"](c["fc1"](x.mean((2, 3))))))[:, :, None, None]
        s = torch.relu(sp["bn0"](sp["conv0"](x)))
        s = torch.relu(sp["bn1"](sp["conv1"](s)))
        s = torch.relu(sp["bn2"](sp["conv2"](s)))
        return x * (1 + torch.sigmoid(ch * sp["conv3"](s)))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, v1b) -> 1x1, BN after each, [GE], ReLU, identity or projected shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, expansion: int,
                 ge: GatherExcite | None = None) -> None:
        super().__init__()
        out = planes * expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = _bn2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.ge = ge
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                            _bn2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.ge is not None:
            y = self.ge(y)
        out: torch.Tensor = self.relu(y + shortcut)
        return out


class ResNet(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, spec.stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn2d(spec.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = spec.stem_width
        for i, (blocks, planes) in enumerate(zip(spec.layers, spec.widths)):
            layer = []
            out = planes * spec.expansion
            for j in range(blocks):
                ge = (GatherExcite(out, spec.ge, ge_kernel(spec, i + 1), i == 0, spec.reduction)
                      if spec.ge else None)
                layer.append(Bottleneck(inplanes, planes, 2 if (j == 0 and i > 0) else 1, spec.expansion, ge))
                inplanes = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            if i + 1 in spec.bam_stages:
                self.add_module(f"bam{i + 1}", BAM(out, spec.reduction, spec.bam_dilation))
        self.num_features = inplanes
        self.global_pool = GeM(spec.gem_p) if spec.pool == "gem" else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, spec.num_classes)
        self._init(spec)

    def _init(self, spec: ModelSpec) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if spec.init == "he_uniform":
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and spec.init == "he_uniform":
                nn.init.normal_(m.weight, 0.0, 0.01)
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
            bam = getattr(self, f"bam{i}", None)
            if bam is not None:  # BAM sits between stages: the stage's output is taken before it
                x = bam(x)
        return outs

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(N, C)`` the classifier reads (GeM output for Multigrain)."""
        return torch.flatten(self.global_pool(self.stages(x)[-1]), 1)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(embedding, logits, normalized_embedding)``; the last is ``e / (||e||_2 + 1e-6)``."""
        e = self.embedding(x)
        return e, self.fc(e), e / (e.norm(dim=1, keepdim=True) + MULTIGRAIN_LOSS.embedding_eps)

    def forward(self, x: torch.Tensor, all_outputs: bool = False) -> Any:
        """Logits, or with ``all_outputs`` the three outputs of :meth:`outputs` (through ``forward`` so that a
        DistributedDataParallel wrapper sees the call)."""
        if all_outputs:
            return self.outputs(x)
        return self.fc(self.embedding(x))


BUILDERS = {"resnet": ResNet}


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def build_model(spec: ModelSpec) -> nn.Module:
    return build_with(BUILDERS, spec, "torch")
