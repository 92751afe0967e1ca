"""Loss conventions shared by every backend, and the one decision of which loss a case trains with
(:func:`loss_for`); a backend only builds what it is told with its own framework's pieces."""
from __future__ import annotations

from dataclasses import dataclass

from harness.config import Case
from harness.models.specs import MULTIGRAIN_LOSS, MultigrainLoss, get_model

__all__ = ["smoothing_targets", "LossChoice", "loss_for"]


def smoothing_targets(epsilon: float, classes: int, style: str) -> tuple[float, float]:
    """(on-value, off-value) of a label-smoothed target.

    ``torch``: ``1 - eps + eps / K`` and ``eps / K`` (PyTorch's ``label_smoothing``); ``k-1``:
    ``1 - eps`` and ``eps / (K - 1)`` (MindSpore ModelZoo ``CrossEntropySmooth``, e.g. BAM's 0.1/999);
    ``k``: ``1 - eps`` and ``eps / K`` (GENet's 0.1/1000; the target then sums to ``1 - eps / K``).
    """
    if style == "torch":
        return 1.0 - epsilon + epsilon / classes, epsilon / classes
    if style == "k-1":
        return 1.0 - epsilon, epsilon / (classes - 1)
    if style == "k":
        return 1.0 - epsilon, epsilon / classes
    raise ValueError(f"unknown label smoothing style {style!r}")


@dataclass(frozen=True)
class LossChoice:
    """A case's training loss, as every backend builds it.

    The cross-entropy is the framework's own with ``label_smoothing`` (PyTorch's convention, which MindSpore's
    ``nn.CrossEntropyLoss`` shares) when ``targets`` is None, else an explicit cross-entropy against ``targets``
    (on-value for the label, off-value elsewhere: :func:`smoothing_targets`). With ``multigrain`` set it is wrapped
    in the Multigrain mixed loss of those numbers over batches of ``repeats`` copies of each image."""

    label_smoothing: float
    targets: tuple[float, float] | None
    multigrain: MultigrainLoss | None
    repeats: int


def loss_for(case: Case) -> LossChoice:
    """The loss ``case`` trains with: its model's (plain cross-entropy, or Multigrain's mixed loss) and its
    label smoothing. Smoothing in PyTorch's convention (or none) is left to the framework's own cross-entropy;
    the other conventions (``label_smoothing_off``: ``k-1``, ``k``) become explicit targets."""
    s, spec = case.settings, get_model(case.model)
    own = s.label_smoothing == 0 or s.label_smoothing_off == "torch"
    return LossChoice(label_smoothing=s.label_smoothing if own else 0.0,
                      targets=None if own else smoothing_targets(s.label_smoothing, s.num_classes,
                                                                 s.label_smoothing_off),
                      multigrain=MULTIGRAIN_LOSS if spec.loss == "multigrain" else None, repeats=spec.repeats)
