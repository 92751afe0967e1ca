"""The MindSpore backend's eval step: top-1 and top-5 hits counted on the device."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mindspore as ms
from mindspore import nn, ops

from harness.config import Case

from .jit import set_level

__all__ = ["make_eval_step"]


class _TopK(nn.Cell):
    """(top-1 hits, top-k hits, images counted) of a batch, computed on the device; only labels >= 0 count."""

    def __init__(self, net: nn.Cell, k: int) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.k = net, k

    def construct(self, x, y):
        logits = self.net(x).astype(ms.float32)
        _, idx = ops.topk(logits, self.k)
        y = y.reshape((-1, 1)).astype(idx.dtype)
        # padding images (harness.data.splits.PAD_LABEL) are compared with, never indexed by, and not counted
        real = y >= 0
        hits = ops.logical_and(ops.equal(idx, y), real).astype(ms.float32)
        return hits[:, 0].sum(), hits.sum(), real.astype(ms.float32).sum()


def make_eval_step(case: Case, net: nn.Cell, device: Any) -> Callable[[Any], tuple[Any, ...]]:
    """``step(batch) -> (top1_correct, top5_correct, count)`` on the device. Every eval batch is whole (the last
    one padded with :data:`harness.data.splits.PAD_LABEL` images), so a graph compiles once; only labels >= 0 count."""
    net.set_train(False)
    topk = set_level(_TopK(net, min(5, case.settings.num_classes)), device)
    topk.set_train(False)

    def step(batch: tuple[ms.Tensor, ...]) -> tuple[ms.Tensor, ms.Tensor, ms.Tensor]:
        if net.training:
            topk.set_train(False)
        counts: tuple[ms.Tensor, ms.Tensor, ms.Tensor] = topk(batch[0], batch[1])
        return counts

    return step
