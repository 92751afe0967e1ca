"""The MindSpore backend's training losses, as the core chose them (:func:`harness.models.losses.loss_for`): the
framework's cross-entropy or an explicit smoothed one, alone (:class:`WithLoss`) or inside the Multigrain mixed
loss (:class:`MultigrainWithLoss`)."""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from harness.config import Case
from harness.models.losses import LossChoice, loss_for
from harness.models.multigrain import (
    SAME_INSTANCE_SCORE,
    ZERO_WEIGHT_SCORE,
    pair_indices,
)
from harness.models.optim import MULTIGRAIN_BETA
from harness.models.specs import MULTIGRAIN_LOSS, MultigrainLoss

__all__ = ["SmoothedCrossEntropy", "WithLoss", "MultigrainWithLoss", "cross_entropy", "with_loss"]


class SmoothedCrossEntropy(nn.Cell):
    """Cross-entropy against ``on`` for the label and ``off`` elsewhere (see harness.models.losses)."""

    def __init__(self, on: float, off: float) -> None:
        super().__init__()
        self.on, self.off = on, off

    def construct(self, logits, labels):
        logp = ops.log_softmax(logits.astype(ms.float32), 1)
        picked = ops.gather_elements(logp, 1, labels.reshape((-1, 1)).astype(ms.int32)).reshape((-1,))
        return -(self.off * logp.sum(axis=1) + (self.on - self.off) * picked).mean()


def cross_entropy(loss: LossChoice) -> nn.Cell:
    """The cross-entropy ``loss`` asks for: MindSpore's own (PyTorch's smoothing convention) or explicit targets."""
    if loss.targets is None:
        return nn.CrossEntropyLoss(label_smoothing=loss.label_smoothing)
    return SmoothedCrossEntropy(*loss.targets)


class WithLoss(nn.Cell):
    """The network followed by its loss: ``construct(x, y)`` is the loss of the batch."""

    def __init__(self, net: nn.Cell, loss: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.loss = net, loss

    def construct(self, x, y):
        return self.loss(self.net(x), y)


class MultigrainWithLoss(nn.Cell):
    """``lam * CE + (1 - lam) * margin`` on the network's outputs (see :mod:`harness.models.multigrain`).

    ``construct(x, y, noise)``: ``noise`` is the ``(B, B)`` uniform noise of the Gumbel-top-k
    distance-weighted sampling of negatives; ``beta`` is the learnable margin boundary.
    """

    #: The parameter's name: the core's weight-decay rule (:func:`harness.models.optim.decays`) never decays it.
    BETA = MULTIGRAIN_BETA

    def __init__(self, net: nn.Cell, ce: nn.Cell, batch_size: int, repeats: int,
                 spec: MultigrainLoss = MULTIGRAIN_LOSS) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.ce, self.k = net, ce, repeats - 1
        self.lam, self.margin, self.eps = spec.lam, spec.margin, spec.eps
        self.cutoff, self.nonzero = spec.cutoff, spec.nonzero_loss_cutoff
        self.beta = Parameter(Tensor(spec.beta_init, ms.float32), name=self.BETA)
        anchors, positives = pair_indices(batch_size, repeats)
        ids = np.arange(batch_size) // repeats
        self.anchors = Tensor(anchors.astype(np.int32))
        self.positives = Tensor(positives.astype(np.int32))
        self.other = Tensor(ids[:, None] != ids[None, :])
        self.eye = Tensor(np.eye(batch_size, dtype=np.float32))
        self.zero_weight = Tensor(np.full((batch_size, batch_size), ZERO_WEIGHT_SCORE, np.float32))
        self.same_instance = Tensor(np.full((batch_size, batch_size), SAME_INSTANCE_SCORE, np.float32))

    def negatives(self, e, noise):
        e = ops.stop_gradient(e)
        sq = (e * e).sum(axis=1, keepdims=True)
        d2 = ops.clamp(sq + sq.T - 2.0 * ops.matmul(e, e.T), min=0.0)
        dist = ops.clamp(ops.sqrt(d2 + self.eye), min=self.cutoff)
        inside = dist < self.nonzero
        safe = ops.select(inside, dist, ops.ones_like(dist))
        d = e.shape[1]
        log_w = (2.0 - d) * ops.log(safe) - ((d - 3.0) / 2.0) * ops.log(1.0 - 0.25 * safe * safe)
        scores = ops.select(ops.logical_and(self.other, inside), log_w,
                            ops.select(self.other, self.zero_weight, self.same_instance))
        gumbel = -ops.log(-ops.log(ops.clamp(noise.astype(ms.float32), 1e-7, 1.0 - 1e-7)))
        _, idx = ops.topk(scores + gumbel, self.k)
        return ops.stop_gradient(idx.reshape((-1,)))

    def construct(self, x, y, noise):
        _, logits, norm = self.net.outputs(x)
        e = norm.astype(ms.float32)
        a = ops.gather(e, self.anchors, 0)
        d_ap = ops.sqrt(((ops.gather(e, self.positives, 0) - a) ** 2).sum(axis=1) + self.eps)
        d_an = ops.sqrt(((ops.gather(e, self.negatives(e, noise), 0) - a) ** 2).sum(axis=1) + self.eps)
        pos = ops.relu(d_ap - self.beta + self.margin)
        neg = ops.relu(self.beta - d_an + self.margin)
        count = ((pos > 0).astype(ms.float32).sum() + (neg > 0).astype(ms.float32).sum())
        margin = (pos + neg).sum() / ops.maximum(count, 1.0)
        return self.lam * self.ce(logits.astype(ms.float32), y) + (1.0 - self.lam) * margin


def with_loss(case: Case, net: nn.Cell) -> WithLoss | MultigrainWithLoss:
    """``net`` with the loss ``case`` trains with."""
    loss = loss_for(case)
    ce = cross_entropy(loss)
    if loss.multigrain is not None:
        return MultigrainWithLoss(net, ce, case.settings.batch_size, loss.repeats, loss.multigrain)
    return WithLoss(net, ce)
