"""The MindSpore side of the fairness benchmark: training as the MindSpore ModelZoo ResNet scripts write it.

The model is a ResNet-50 v1b ``Cell`` written here in the ModelZoo's style (not harness's model, not
harness_mindspore's): ``nn.Conv2d`` with ``pad_mode='same'`` and no bias as the zoo's ResNet-50 uses
(``--pad-mode pad`` gives explicit symmetric padding instead), ``nn.BatchNorm2d(momentum=0.9)``, a 3x3 stride-2 max
pool with ``pad_mode='same'``, bottlenecks [3, 4, 6, 3] with the stride on the 3x3 convolution and a 1x1
convolution + BN downsample, ``ReduceMean`` over the spatial axes, ``nn.Dense``. GRAPH mode;
``nn.Momentum(use_nesterov=True)`` with momentum 0.9 and weight decay 1e-4 on every parameter;
``nn.CrossEntropyLoss(label_smoothing=0.1)`` (PyTorch's smoothing, as the torch loop and harness use); fp32.

The zoo's CPU path (its train.py: ``dataset_sink_mode`` is off when the target is CPU) calls
``Model.train(dataset_sink_mode=False)``, which wraps the network in ``nn.WithLossCell`` and ``nn.TrainOneStepCell``
and calls that once per batch from the dataset, with a loss monitor reading the loss every step. ``--loop cell``
(the default) builds those two cells and calls them directly on the one host-made batch (no dataset in the timed
steps, as harness's synthetic data has none), reading the loss once a step; ``--loop model`` runs
``Model.train(dataset_sink_mode=False)`` over a ``GeneratorDataset`` yielding that batch, timed by a callback.

The oneDNN ISA cap (``ONEDNN_MAX_CPU_ISA=AVX2`` on AVX-512 CPUs, /work/shared/reference/environment.md) comes from
importing harness_mindspore's package first, which sets only that and MindSpore's log level, so this loop and
harness's MindSpore case run the same oneDNN kernels; the JSON records the value.

    python benchmarks/fairness/mindspore_expert.py                 # full size: 224 px, batch 16, 1000 classes
    python benchmarks/fairness/mindspore_expert.py --width 0.25 --image-size 64 --batch-size 8 --steps 3 --warmup 1

Prints one JSON line: the timed steps' seconds, images/s and what ran.
"""
from __future__ import annotations

import os
import time

import harness_mindspore  # noqa: F401  (the environment only: the oneDNN ISA cap, before MindSpore loads)

# isort: split
import mindspore as ms
import numpy as np
from common import channels, emit, host_batch, options, timed_steps
from mindspore import nn, ops

_TARGETS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}
PAD_MODE = "same"


def _conv(cin, cout, k, stride=1):
    if PAD_MODE == "pad":
        return nn.Conv2d(cin, cout, k, stride=stride, pad_mode="pad", padding=k // 2, has_bias=False)
    return nn.Conv2d(cin, cout, k, stride=stride, pad_mode="same", has_bias=False)


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.9)


class ResidualBlock(nn.Cell):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1, self.bn1 = _conv(cin, planes, 1), _bn(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3, stride), _bn(planes)  # v1b: the stride on the 3x3
        self.conv3, self.bn3 = _conv(planes, cout, 1), _bn(cout)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or cin != cout
        self.down_sample_layer = nn.SequentialCell([_conv(cin, cout, 1, stride), _bn(cout)]) if self.down_sample \
            else None

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.down_sample:
            identity = self.down_sample_layer(x)
        return self.relu(out + identity)


class ResNet50(nn.Cell):
    def __init__(self, num_classes=1000, width=1.0):
        super().__init__()
        stem = channels(64, width)
        self.conv1, self.bn1 = _conv(3, stem, 7, 2), _bn(stem)
        self.relu = nn.ReLU()
        if PAD_MODE == "pad":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        else:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
        layers, cin = [], stem
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            planes = channels(planes, width)
            for i in range(blocks):
                layers.append(ResidualBlock(cin, planes, stride if i == 0 else 1))
                cin = planes * ResidualBlock.expansion
        self.layers = nn.SequentialCell(layers)
        self.mean = ops.ReduceMean(keep_dims=False)
        self.end_point = nn.Dense(cin, num_classes, has_bias=True)

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.mean(self.layers(x), (2, 3))
        return self.end_point(x)


class _StepTimer(ms.train.Callback):
    """``Model.train``'s per-step clock: step_begin to step_end, the loss read at step_end as LossMonitor does."""

    def __init__(self):
        super().__init__()
        self.times, self.loss, self._t0 = [], float("nan"), 0.0

    def on_train_step_begin(self, run_context):
        self._t0 = time.perf_counter()

    def on_train_step_end(self, run_context):
        self.loss = float(run_context.original_args().net_outputs.asnumpy())
        self.times.append(time.perf_counter() - self._t0)


def main():
    global PAD_MODE
    p = options(__doc__.splitlines()[0])
    p.add_argument("--loop", choices=("cell", "model"), default="cell",
                   help="cell: TrainOneStepCell(WithLossCell) called in a loop; model: Model.train over a dataset")
    p.add_argument("--pad-mode", choices=("same", "pad"), default="same",
                   help="convolution padding: same (the zoo's) or pad (explicit, symmetric)")
    p.add_argument("--jit-level", choices=("unset", "O0", "O1"), default="unset",
                   help="the training cell's graph compile level (mindspore.JitConfig); unset: MindSpore's own "
                        "choice, as the zoo's scripts leave it")
    args = p.parse_args()
    PAD_MODE = args.pad_mode
    target = _TARGETS[args.device]
    ms.set_device(target)
    ms.set_context(mode=ms.GRAPH_MODE)
    if args.threads:
        ms.device_context.cpu.op_tuning.threads_num(args.threads)
    ms.set_seed(args.seed)

    net = ResNet50(num_classes=args.num_classes, width=args.width)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    # MindSpore 2.10's CPU ApplyMomentum kernel ignores use_nesterov (docs/models.md): on CPU this runs plain
    # momentum, one fused kernel per parameter, as harness's backend's nn.SGD(nesterov=True) runs Nesterov's
    # update in one. The JSON says which update ran.
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9, weight_decay=1e-4, use_nesterov=True)
    update = ("ApplyMomentum with use_nesterov=True, ignored by the CPU kernel: plain momentum ran"
              if target == "CPU" else "ApplyMomentum with use_nesterov=True (Nesterov)")
    x, y = host_batch(args)
    y = y.astype(np.int32)

    if args.loop == "cell":
        train_net = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), opt)
        if args.jit_level != "unset":
            train_net.set_jit_config(ms.JitConfig(jit_level=args.jit_level))
        train_net.set_train(True)
        images, labels = ms.Tensor(x), ms.Tensor(y)
        step_s, loss = timed_steps(lambda: float(train_net(images, labels).asnumpy()), args.warmup, args.steps)
        how = "nn.TrainOneStepCell(nn.WithLossCell(net, loss)) called once a step, loss read every step"
    else:
        n = args.warmup + args.steps
        data = ms.dataset.GeneratorDataset(lambda: ((x, y) for _ in range(n)), column_names=["image", "label"],
                                           shuffle=False, python_multiprocessing=False)
        timer = _StepTimer()
        model = ms.train.Model(net, loss_fn=loss_fn, optimizer=opt)
        if args.jit_level != "unset":
            model.train_network.set_jit_config(ms.JitConfig(jit_level=args.jit_level))
        model.train(1, data, callbacks=[timer], dataset_sink_mode=False)
        step_s, loss = timer.times[args.warmup:], timer.loss
        how = "Model.train(dataset_sink_mode=False) over a GeneratorDataset of the batch, loss read every step"
    emit(args, "mindspore", ms.__version__, step_s, loss, precision="fp32", channels_last=False, loop=how,
         optimizer_update=update, mode="GRAPH", pad_mode=args.pad_mode, jit_level=args.jit_level,
         threads=args.threads, onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"))


if __name__ == "__main__":
    main()
