"""Model variants as data: one framework-neutral description per variant.

Backends read a :class:`ModelSpec` and build it with one builder per block
family; no backend holds a per-model copy of the network. Facts come from
``shared/reference/models.md``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from harness.errors import HarnessError, near

T = TypeVar("T")

__all__ = ["ModelSpec", "MultigrainLoss", "MULTIGRAIN_LOSS", "MODELS", "get_model", "scaled", "check_batch",
           "stage_sizes", "ge_kernel", "build_with"]


@dataclass(frozen=True)
class ModelSpec:
    """A ResNet-family variant.

    ``family`` names the block family a backend builds (``"resnet"``: bottleneck
    ResNet v1b, stride on the 3x3 conv, 7x7/2 stem, 3x3/2 max-pool, 1x1 strided
    conv + BN shortcut). Widths are the published ones; a case's ``width``
    multiplier scales them with :func:`scaled`.
    """

    name: str
    family: str = "resnet"
    layers: tuple[int, ...] = (3, 4, 6, 3)
    stem_width: int = 64
    widths: tuple[int, ...] = (64, 128, 256, 512)
    expansion: int = 4
    zero_init_last_bn: bool = True
    # Attention, by where it sits. BAM: a module after each listed stage (1-based).
    bam_stages: tuple[int, ...] = ()
    # Gather-excite in every bottleneck, on conv3+BN before the residual add:
    # "theta-minus" (global mean), "theta" (global-extent depthwise conv + BN), "theta-plus" (theta + MLP).
    ge: str | None = None
    reduction: int = 16  # BAM channel/spatial and GE-theta-plus MLP squeeze
    bam_dilation: int = 4
    # "fan_out": convs kaiming-normal fan_out (timm/Gluon); "he_uniform": convs HeUniform, dense
    # Normal(0, 0.01), biases 0 (MindSpore ModelZoo BAM).
    init: str = "fan_out"
    # Pooling head: "avg" (global average) or "gem" (generalised mean with the fixed exponent gem_p).
    pool: str = "avg"
    gem_p: float = 3.0
    # Training loss: "ce" (cross-entropy), or "multigrain": lambda * CE + (1 - lambda) * margin loss on the
    # normalised GeM embedding (see :class:`MultigrainLoss`). ``repeats`` is the repeated-augmentation factor:
    # the train sampler yields every image that many times in a row (the batch sizes this allows:
    # :func:`check_batch`).
    loss: str = "ce"
    repeats: int = 1
    num_classes: int = 1000
    image_size: int = 224
    params: int | None = None  # published trainable parameter count at image_size, 1000 classes
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: str = ""


@dataclass(frozen=True)
class MultigrainLoss:
    """The Multigrain mixed loss (facebookresearch/multigrain), as numbers.

    ``loss = lam * CE + (1 - lam) * margin``. Margin: ``relu(d(a,p) - beta + margin) +
    relu(beta - d(a,n) + margin)`` summed and divided by the number of non-zero terms; beta is a
    learnable scalar (no weight decay). Negatives: distance-weighted sampling with the distances
    clamped below at ``cutoff`` and weights zeroed from ``nonzero_loss_cutoff`` on.
    """

    lam: float = 0.5
    margin: float = 0.2
    beta_init: float = 1.2
    cutoff: float = 0.5
    nonzero_loss_cutoff: float = 1.4
    eps: float = 1e-8  # inside the square root of the anchor distances
    embedding_eps: float = 1e-6  # normalized_embedding = embedding / (||embedding|| + embedding_eps)


MULTIGRAIN_LOSS = MultigrainLoss()


def _out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def stage_sizes(image_size: int, stages: int = 4) -> tuple[int, ...]:
    """Spatial size of each stage's output (56/28/14/7 at 224) under the shared padding convention."""
    s = _out(_out(image_size, 7, 2, 3), 3, 2, 1)  # stem conv, max-pool
    sizes = [s]
    for _ in range(stages - 1):
        s = _out(s, 3, 2, 1)  # the stride-2 3x3 conv of each later stage
        sizes.append(s)
    return tuple(sizes)


def ge_kernel(spec: ModelSpec, stage: int) -> int:
    """GENet theta's depthwise kernel in ``stage`` (1-based): the full extent of its input.

    Stage 1 first halves its 56x56 map with a 3x3 stride-2 conv, so at 224 px every
    kernel is 28/28/14/7 (input/8, /8, /16, /32).
    """
    size = stage_sizes(spec.image_size, len(spec.layers))[stage - 1]
    return _out(size, 3, 2, 1) if stage == 1 else size


def scaled(channels: int, width: float) -> int:
    """Channels after a width multiplier: rounded, at least 1."""
    return max(1, round(channels * width))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gluon_resnet50_v1b",
            params=25_557_032,
            source="timm resnet50.gluon_in1k; seed gluon_resnet50_v1b.md",
        ),
        ModelSpec(
            name="resnet50_bam",
            bam_stages=(1, 2, 3),
            zero_init_last_bn=False,
            init="he_uniform",
            params=25_915_099,
            source="MindSpore ModelZoo research/cv/resnet50_bam; seed resnet50_bam.md",
        ),
        ModelSpec(name="genet_res50_theta_minus", ge="theta-minus", params=25_557_032,
                  source="MindSpore ModelZoo research/cv/GENet_Res50 (extra=False); seed genet_res50.md"),
        ModelSpec(name="genet_res50_theta", ge="theta", params=31_071_272,
                  source="MindSpore ModelZoo research/cv/GENet_Res50 (extra=True, mlp=False); seed genet_res50.md"),
        ModelSpec(name="genet_res50_theta_plus", ge="theta-plus", params=33_586_216,
                  source="MindSpore ModelZoo research/cv/GENet_Res50 (extra=True, mlp=True); seed genet_res50.md"),
        ModelSpec(name="multigrain_resnet50", pool="gem", gem_p=3.0, loss="multigrain", repeats=3,
                  params=25_557_032,
                  source="facebookresearch/multigrain (GeM p=3, lambda 0.5); MindSpore ModelZoo; seed multigrain.md"),
    )
}


def get_model(name: str, *, width: float = 1.0, num_classes: int | None = None,
              image_size: int | None = None) -> ModelSpec:
    """Look a variant up by name, optionally resized for a case."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise HarnessError(f"unknown model '{name}'{near(name, MODELS)} (available: {', '.join(MODELS)})") from None
    if width != 1.0:
        spec = replace(spec, stem_width=scaled(spec.stem_width, width),
                       widths=tuple(scaled(w, width) for w in spec.widths), params=None)
    if num_classes is not None and num_classes != spec.num_classes:
        spec = replace(spec, num_classes=num_classes, params=None)
    if image_size is not None:
        spec = replace(spec, image_size=image_size)
    return spec


def check_batch(batch_size: int, repeats: int, model: str, where: str = "") -> None:
    """Refuse a batch (per device) that repeated augmentation cannot fill with whole instances: with ``repeats`` =
    m > 1 it must be a multiple of m holding at least two different images, since the Multigrain margin loss
    draws each image's negatives from the other images of its batch.

    The one home of this rule: the suite loader applies it to every case when the suite loads
    (:func:`harness.run.suite.load_suite`), and the data streams (the core's host batches, the backends' own)
    take the batch as given. The core's host batches used to ask only for a multiple of m (accepting a batch of
    one image's m copies, which has no negatives); the stricter rule was kept."""
    if repeats > 1 and (batch_size % repeats or batch_size < 2 * repeats):
        raise HarnessError(f"{where + ': ' if where else ''}batch_size {batch_size}: {model} uses repeated "
                           f"augmentation (m = {repeats}), so the batch size must be a multiple of {repeats} holding "
                           f"at least 2 different images (e.g. {max(2, -(-batch_size // repeats)) * repeats})")


def build_with(builders: Mapping[str, Callable[[ModelSpec], T]], spec: ModelSpec, backend: str) -> T:
    """Build ``spec`` with a backend's builder for its block family."""
    if spec.family not in builders:
        raise HarnessError(f"{backend} backend has no builder for block family '{spec.family}' ({spec.name})")
    return builders[spec.family](spec)
