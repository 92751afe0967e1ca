"""Which parameters an optimizer decays: decided here for every backend, each of which only applies the answer to
its own parameter objects (PyTorch param groups, MindSpore group parameters, THOR's ``decay_filter``).

The rule works on what every framework has alike, a parameter's name and shape: with ``weight_decay_on:
weights`` (the default) only parameters of two or more dimensions are decayed (conv and dense weights; never a
bias or a BatchNorm scale or shift); with ``all`` every parameter of the network is. Multigrain's margin boundary
beta (:data:`MULTIGRAIN_BETA`) is never decayed: it is a learnable threshold of the loss, not a weight of the
network. (The backends used to hold a copy each: PyTorch kept beta out by passing it apart from the model,
MindSpore by its name; they agreed, and the name is now the rule's.)
"""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MULTIGRAIN_BETA", "decays"]

#: The name of Multigrain's learnable margin boundary, the same in every backend (a MindSpore parameter's name, the
#: key of PyTorch's extra parameter), so the rule can recognise it.
MULTIGRAIN_BETA = "multigrain_beta"


def decays(name: str, shape: Sequence[int], on: str) -> bool:
    """Whether the trainable parameter ``name`` of ``shape`` gets weight decay under ``weight_decay_on: on``
    (``"weights"`` or ``"all"``, checked when the suite loads)."""
    if name == MULTIGRAIN_BETA or name.endswith("." + MULTIGRAIN_BETA):
        return False
    return on == "all" or len(tuple(shape)) > 1
