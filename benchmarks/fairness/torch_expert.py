"""The PyTorch side of the fairness benchmark: a plain training loop as PyTorch's own examples write it.

The model is a ResNet-50 v1b written here in the torchvision style (not harness's model, not harness_torch):
7x7 stride-2 stem, 3x3 stride-2 max pool, bottlenecks [3, 4, 6, 3] with the stride on the 3x3 convolution and a
1x1 convolution + BN downsample, global average pool, linear classifier. The loop follows the ImageNet example
(pytorch/examples imagenet/main.py) and timm's train loop: ``model.train()``, forward and loss (under
``torch.autocast`` with ``--bf16``), ``optimizer.zero_grad(set_to_none=True)``, ``loss.backward()``,
``optimizer.step()``, and ``loss.item()`` once a step, where the ImageNet example reads it for its meter (the one
place the loop waits for the device). SGD with Nesterov momentum 0.9, weight decay 1e-4 on every parameter, label
smoothing 0.1, fp32 unless ``--bf16``; ``--channels-last`` puts the model and the batch in NHWC as timm does.

    python benchmarks/fairness/torch_expert.py                     # full size: 224 px, batch 16, 1000 classes
    python benchmarks/fairness/torch_expert.py --bf16 --channels-last
    python benchmarks/fairness/torch_expert.py --width 0.25 --image-size 64 --batch-size 8 --steps 3 --warmup 1

Prints one JSON line: the timed steps' seconds, images/s and what ran.
"""
from __future__ import annotations

import torch
from common import channels, emit, host_batch, options, timed_steps
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)  # v1b: the stride sits on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        self.inplanes = channels(64, width)
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(channels(64, width), 3)
        self.layer2 = self._make_layer(channels(128, width), 4, stride=2)
        self.layer3 = self._make_layer(channels(256, width), 6, stride=2)
        self.layer4 = self._make_layer(channels(512, width), 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def main() -> None:
    p = options(__doc__.splitlines()[0])
    p.add_argument("--bf16", action="store_true", help="torch.autocast in bfloat16")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and batch")
    args = p.parse_args()
    if args.device == "ascend":
        import torch_npu  # noqa: F401  (registers the npu device)
    device = torch.device({"cpu": "cpu", "gpu": "cuda", "ascend": "npu"}[args.device])
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = ResNet50(num_classes=args.num_classes, width=args.width).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    x, y = host_batch(args)  # made once on the host; on the device once, as harness's synthetic data is
    images = torch.from_numpy(x).to(device).contiguous(memory_format=memory_format)
    target = torch.from_numpy(y).to(device)

    model.train()

    def step() -> float:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.bf16):
            output = model(images)
            loss = criterion(output, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    step_s, loss = timed_steps(step, args.warmup, args.steps)
    emit(args, "torch", torch.__version__, step_s, loss, precision="bf16" if args.bf16 else "fp32",
         channels_last=args.channels_last, threads=torch.get_num_threads(),
         loop="plain loop (ImageNet example / timm style), loss.item() every step",
         optimizer_update="torch.optim.SGD(nesterov=True), weight decay 1e-4 on every parameter")


if __name__ == "__main__":
    main()
