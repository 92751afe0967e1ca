"""Published training recipes as data, selectable by name (``recipe:`` in a suite).

A recipe is a set of :class:`harness.config.Settings` values: what does not depend
on the device count, plus per-device batch size and learning rate for 1 and 8
devices. Values the sources do not publish for a device count are derived by the
linear scaling rule from the published count and are listed in ``derived``.
Suite settings always override a recipe's values, so every value can be changed.

``recipe: published`` picks each model's own recipe for the case's backend (for
``multigrain_resnet50``: THOR on MindSpore, SGD elsewhere, as the sources did).
Sources: ``shared/reference/models.md`` and the seed cards in ``shared/seeds/``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.config import coerce_settings
from harness.errors import HarnessError, near

__all__ = ["Recipe", "RECIPES", "PUBLISHED", "resolve_recipe", "published_recipe"]


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    source: str
    settings: Mapping[str, Any]
    per_devices: Mapping[int, Mapping[str, Any]]
    derived: tuple[int, ...] = ()  # device counts whose batch/lr are not published but scaled
    backends: tuple[str, ...] = ()  # empty: any backend
    preprocessing: str = ""
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Per backend, the nearest settings it offers where the published one is another framework's own (named in
    #: ``notes``); checked against what the backend declares when the suite loads.
    adapt: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def values(self, devices: int, backend: str | None = None) -> dict[str, Any]:
        """Settings for ``devices`` data-parallel devices.

        A device count without its own entry keeps the per-device batch of the nearest published count
        and scales that count's learning rate with the global batch (linear scaling rule).
        """
        out = dict(self.settings)
        if devices in self.per_devices:
            out.update(self.per_devices[devices])
        else:
            base = min(self.per_devices, key=lambda n: (abs(n - devices), n))
            ref = self.per_devices[base]
            out.update(ref)
            out["lr"] = ref["lr"] * devices / base
            if "min_lr" in ref:
                out["min_lr"] = ref["min_lr"] * devices / base
        out["devices"] = devices
        out.update(self.adapt.get(backend or "", {}))
        return out


_COMMON_224 = {"image_size": 224, "num_classes": 1000, "data": "folder", "eval": True}
#: What the ImageNet recipes share: momentum SGD, L2 1e-4 on conv/dense weights only, smoothing 0.1,
#: colour jitter 0.4, eval resize 256 -> crop 224; each recipe adds or overrides the rest.
_IMAGENET_SGD = {**_COMMON_224, "optimizer": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
                 "weight_decay_on": "weights", "label_smoothing": 0.1, "color_jitter": 0.4,
                 "eval_resize_ratio": 0.875}
#: The MindSpore ModelZoo recipes (BAM, GENet) add fp16 with a fixed loss scale of 1024.
_MODELZOO = {**_IMAGENET_SGD, "precision": "fp16", "loss_scale": 1024.0}

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        name="gluon_resnet50_v1b",
        model="gluon_resnet50_v1b",
        source="Ascend ModelZoo-PyTorch gluon_resnet50_v1b; models.md",
        settings={**_IMAGENET_SGD, "nesterov": True, "label_smoothing_off": "torch", "epochs": 90,
                  "schedule": "cosine", "schedule_per_epoch": True, "lr_warmup_epochs": 3, "lr_warmup_init": 1e-4,
                  "min_lr": 1e-5, "precision": "fp16", "amp_level": "O2", "loss_scale": 64.0},
        per_devices={1: {"batch_size": 256, "lr": 0.2}, 8: {"batch_size": 256, "lr": 1.6}},
        preprocessing="train: random-resized-crop 224 (0.08-1, 3/4-4/3), flip, colour jitter 0.4; "
                      "eval: resize 256 bicubic, centre crop 224",
    ),
    Recipe(
        name="resnet50_bam",
        model="resnet50_bam",
        source="MindSpore ModelZoo research/cv/resnet50_bam; seed resnet50_bam.md",
        settings={**_MODELZOO, "label_smoothing_off": "k-1", "epochs": 160, "schedule": "cosine",
                  "schedule_per_epoch": True, "schedule_period_epochs": 150, "min_lr": 0.0, "amp_level": "O3",
                  "hue_jitter": 0.1},
        per_devices={1: {"batch_size": 128, "lr": 0.02}, 8: {"batch_size": 128, "lr": 0.18}},
        preprocessing="train: random-crop-decode-resize 224 (0.08-1), flip, colour adjust 0.4/0.4/0.4 hue 0.1; "
                      "eval: resize 256, centre crop 224",
        notes="lr(e) = lr_init * (1 + cos(pi * e / 150)) / 2 per epoch over 160 epochs: it rises after epoch 150, "
              "as published. O3 (the whole network in fp16) is MindSpore's own level: torch runs it as O2 (autocast)",
        adapt={"torch": {"amp_level": "O2"}},
    ),
    Recipe(
        name="genet_res50_theta_minus",
        model="genet_res50_theta_minus",
        source="MindSpore ModelZoo research/cv/GENet_Res50; seed genet_res50.md",
        settings={**_MODELZOO, "label_smoothing_off": "k", "epochs": 220, "schedule": "linear_cosine",
                  "schedule_cycles": 0.47, "amp_level": "O2"},
        per_devices={8: {"batch_size": 256, "lr": 0.8, "min_lr": 0.8e-5}},
        derived=(1,),
        preprocessing="train: random-crop-decode-resize 224, flip, colour adjust 0.4; eval: resize 256, crop 224",
        notes="lr_i = 0.8 * ((T - i) / T * 0.5 * (1 + cos(2 pi 0.47 i / T)) + 1e-5) per step",
    ),
    *(Recipe(
        name=name,
        model=name,
        source="MindSpore ModelZoo research/cv/GENet_Res50; seed genet_res50.md",
        settings={**_MODELZOO, "label_smoothing_off": "k", "epochs": 150, "schedule": "linear", "min_lr": 0.0,
                  "amp_level": "O2"},
        per_devices={8: {"batch_size": 256, "lr": 0.8}},
        derived=(1,),
        preprocessing="train: random-crop-decode-resize 224, flip, colour adjust 0.4; eval: resize 256, crop 224",
        notes="lr_i = 0.8 * (1 - i / T) per step over all T steps",
    ) for name in ("genet_res50_theta", "genet_res50_theta_plus")),
    Recipe(
        name="multigrain_sgd",
        model="multigrain_resnet50",
        source="facebookresearch/multigrain (lambda 0.5, p 3); models.md",
        settings={**_IMAGENET_SGD, "weight_decay_on": "all", "label_smoothing": 0.0, "epochs": 120,
                  "schedule": "step", "milestones": [30, 60, 90], "gamma": 0.1, "precision": "fp32",
                  "amp_level": "O0", "color_jitter": 0.3, "lighting": 0.1},
        per_devices={1: {"batch_size": 510, "lr": 0.2}, 8: {"batch_size": 63, "lr": 0.2}},
        derived=(8,),
        preprocessing="train: random-resized-crop 224, flip, colour jitter 0.3, PCA lighting 0.1, repeated "
                      "augmentation m=3; eval: resize int(256/224 * s), centre crop s",
        notes="the paper's batch of 512 becomes 510 (8 devices: 63 each): repeated augmentation needs whole "
              "groups of 3",
    ),
    Recipe(
        name="multigrain_thor",
        model="multigrain_resnet50",
        source="MindSpore ModelZoo research/cv/multigrain (THOR config); seed multigrain.md",
        settings={**_COMMON_224, "num_classes": 1001, "optimizer": "thor", "momentum": 0.9, "weight_decay": 1e-4,
                  "weight_decay_on": "weights", "label_smoothing": 0.1, "label_smoothing_off": "k-1",
                  "epochs": 45, "schedule": "poly", "lr_power": 4.9687, "schedule_period_epochs": 70,
                  "damping_init": 0.02345, "damping_decay": 0.5467, "thor_frequency": 834,
                  "precision": "fp16", "amp_level": "O2", "loss_scale": 1024.0, "color_jitter": 0.4,
                  "eval_resize_ratio": 0.875},
        per_devices={8: {"batch_size": 30, "lr": 0.05672}},
        derived=(1,),
        backends=("mindspore",),
        preprocessing="as the ModelZoo ResNet-50 THOR pipeline: random-crop-decode-resize 224, flip, "
                      "normalise; eval: resize 256, centre crop 224",
        notes="epochs and batch from the seed's performance table (45 epochs, batch 30 per device); the config "
              "listing says 50 and 480. THOR lr: lr_init * (1 - e / 70) ** 4.9687; "
              "damping 0.02345 * 0.5467 ** (e / 10)",
    ),
)}

#: The model's own recipe for a backend ("*": any other backend).
PUBLISHED: dict[str, dict[str, str]] = {
    "gluon_resnet50_v1b": {"*": "gluon_resnet50_v1b"},
    "resnet50_bam": {"*": "resnet50_bam"},
    "genet_res50_theta_minus": {"*": "genet_res50_theta_minus"},
    "genet_res50_theta": {"*": "genet_res50_theta"},
    "genet_res50_theta_plus": {"*": "genet_res50_theta_plus"},
    "multigrain_resnet50": {"mindspore": "multigrain_thor", "*": "multigrain_sgd"},
}


def published_recipe(model: str, backend: str) -> str | None:
    table = PUBLISHED.get(model)
    return None if table is None else table.get(backend, table["*"])


def resolve_recipe(name: str, model: str, backend: str, devices: int, where: str) -> dict[str, Any]:
    """The settings of recipe ``name`` (or ``"published"``) for one case, validated."""
    if name == "published":
        resolved = published_recipe(model, backend)
        if resolved is None:
            raise HarnessError(f"{where}: recipe: model '{model}' has no published recipe")
        name = resolved
    recipe = RECIPES.get(name)
    if recipe is None:
        choices = ["published", *RECIPES]
        raise HarnessError(f"{where}: recipe: unknown recipe '{name}'{near(name, choices)} "
                           f"(available: {', '.join(choices)})")
    if recipe.model != model:
        raise HarnessError(f"{where}: recipe: '{name}' is the recipe of {recipe.model}, not {model}")
    if recipe.backends and backend not in recipe.backends:
        raise HarnessError(f"{where}: recipe: '{name}' runs only on the {', '.join(recipe.backends)} backend "
                           f"({recipe.settings.get('optimizer')}); use recipe 'published' or "
                           f"'{published_recipe(model, backend)}' for {backend}")
    values = coerce_settings(recipe.values(devices, backend), f"recipe {name}")
    values["recipe"] = name
    return values
