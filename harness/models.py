"""Model variants as data: one framework-neutral description per variant.

Backends read a :class:`ModelSpec` and build it with one builder per block
family; no backend holds a per-model copy of the network. Facts come from
``shared/reference/models.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import HarnessError, near

__all__ = ["ModelSpec", "MODELS", "get_model", "scaled"]


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
    pool: str = "avg"
    zero_init_last_bn: bool = True
    num_classes: int = 1000
    image_size: int = 224
    params: int | None = None  # published trainable parameter count at image_size, 1000 classes
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: str = ""
    options: dict = field(default_factory=dict)


def scaled(channels: int, width: float) -> int:
    """Channels after a width multiplier: rounded, at least 1."""
    return max(1, int(round(channels * width)))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gluon_resnet50_v1b",
            params=25_557_032,
            source="timm resnet50.gluon_in1k; seed gluon_resnet50_v1b.md",
        ),
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
