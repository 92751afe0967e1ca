"""models: the model variants as data and everything that is the same for every framework about training them.

Specs of the variants (``specs``: :class:`ModelSpec`, :data:`MODELS`, :func:`get_model`), published recipes
(``recipes``), learning-rate schedules (``schedules``), which loss a case trains with (``losses``, the Multigrain
reference in ``multigrain``), which parameters take weight decay (``optim``), neutral weights (``weights``),
analytic FLOPs (``flops``), the model contract every backend's network keeps (``contract``: each tensor's neutral
name, shape, dtype and initialisation, the shared constants, the formulas) and the NumPy reference that computes it
(``reference``).

May import: the foundation and :mod:`harness.measure`.
"""
from harness.models.specs import MODELS, ModelSpec, get_model

__all__ = ["MODELS", "ModelSpec", "get_model"]
