"""Published recipes as data: values at named steps/epochs against the formulas in models.md,
selection by name from a suite, overriding, and what each device count gets."""
from __future__ import annotations

import math

import pytest
from backends import backends_with

from harness.config import Settings
from harness.errors import HarnessError
from harness.models.losses import smoothing_targets
from harness.models.recipes import PUBLISHED, RECIPES, resolve_recipe
from harness.models.schedules import damping_at, lr_at
from harness.models.specs import MODELS
from harness.run.suite import load_suite

SPE = 1251  # steps per epoch used throughout (any value works; ImageNet at batch 1024)


def recipe(name: str, devices: int = 8, backend: str = "mindspore", **over) -> Settings:
    values = resolve_recipe(name, RECIPES[name].model, backend, devices, "test")
    values.update(over)
    return Settings(**values)


def total(s: Settings) -> int:
    return int(s.epochs * SPE)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_valid_settings_for_its_model(name):
    r = RECIPES[name]
    assert r.model in MODELS
    for devices in (1, 8):
        s = recipe(name, devices, backend=(r.backends or ("torch",))[0])
        assert s.recipe == name and s.devices == devices
        assert s.optimizer in ("sgd", "thor") and s.batch_size > 0 and s.lr > 0
        assert s.batch_size % MODELS[r.model].repeats == 0


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_has_a_published_recipe_on_every_backend(model):
    for backend in (b.name for b in backends_with("train")):
        s = resolve_recipe("published", model, backend, 8, "test")
        assert RECIPES[s["recipe"]].model == model


def test_bam_cosine_with_t_max_150_over_160_epochs():
    # lr(e) = lr_init * (1 + cos(pi * e / 150)) / 2, per epoch, lr_init 0.18 on 8 devices
    s = recipe("resnet50_bam", 8)
    assert (s.lr, s.batch_size, s.epochs) == (0.18, 128, 160)
    for epoch in (0, 1, 75, 149, 150, 155, 159):
        want = 0.18 * (1 + math.cos(math.pi * epoch / 150)) / 2
        for step in (epoch * SPE, epoch * SPE + SPE - 1):  # constant within the epoch
            assert lr_at(step, s, total(s), SPE) == pytest.approx(want, rel=1e-12, abs=1e-15), (epoch, step)
    assert lr_at(155 * SPE, s, total(s), SPE) > lr_at(150 * SPE, s, total(s), SPE)  # rises after T_max, as written
    assert recipe("resnet50_bam", 1).lr == 0.02


def test_genet_theta_linear_decay_per_step():
    # lr_i = 0.8 * (1 - i / T) over all T steps
    s = recipe("genet_res50_theta_plus", 8)
    t = total(s)
    assert s.epochs == 150
    for i in (0, 1, t // 3, t // 2, t - 1):
        assert lr_at(i, s, t, SPE) == pytest.approx(0.8 * (1 - i / t), rel=1e-12, abs=1e-15)


def test_genet_theta_minus_linear_cosine_per_step():
    # lr_i = 0.8 * ((T - i) / T * 0.5 * (1 + cos(2 pi 0.47 i / T)) + 1e-5)
    s = recipe("genet_res50_theta_minus", 8)
    t = total(s)
    assert s.epochs == 220
    for i in (0, 7, t // 4, t // 2, (3 * t) // 4, t - 1):
        want = 0.8 * ((t - i) / t * 0.5 * (1 + math.cos(2 * math.pi * 0.47 * i / t)) + 1e-5)
        assert lr_at(i, s, t, SPE) == pytest.approx(want, rel=1e-12)


def test_gluon_cosine_per_epoch_with_three_warmup_epochs():
    # warm-up epochs 0, 1, 2 from 1e-4 to lr; then min + (lr - min) * (1 + cos(pi * (e - 3) / 87)) / 2
    s = recipe("gluon_resnet50_v1b", 8)
    assert (s.lr, s.batch_size, s.epochs, s.min_lr) == (1.6, 256, 90, 1e-5)
    for epoch, want in ((0, 1e-4), (1, 1e-4 + (1.6 - 1e-4) / 3), (2, 1e-4 + 2 * (1.6 - 1e-4) / 3)):
        assert lr_at(epoch * SPE + 5, s, total(s), SPE) == pytest.approx(want, rel=1e-12)
    for epoch in (3, 30, 60, 89):
        want = 1e-5 + (1.6 - 1e-5) * (1 + math.cos(math.pi * (epoch - 3) / 87)) / 2
        assert lr_at(epoch * SPE, s, total(s), SPE) == pytest.approx(want, rel=1e-12)
    assert recipe("gluon_resnet50_v1b", 1).lr == 0.2


def test_multigrain_step_schedule():
    s = recipe("multigrain_sgd", 1, backend="torch")
    for epoch, want in ((0, 0.2), (29, 0.2), (30, 0.02), (59, 0.02), (60, 0.002), (90, 0.0002), (119, 0.0002)):
        assert lr_at(epoch * SPE, s, total(s), SPE) == pytest.approx(want, rel=1e-12)
    assert s.weight_decay_on == "all" and s.label_smoothing == 0 and s.lighting == 0.1


def test_thor_poly_lr_and_damping():
    # lr = 0.05672 * (1 - ((i + 1) / SPE) / 70) ** 4.9687; damping = 0.02345 * 0.5467 ** (((i + 1) / SPE) / 10)
    s = recipe("multigrain_thor", 8)
    assert (s.optimizer, s.num_classes, s.batch_size, s.epochs, s.thor_frequency) == ("thor", 1001, 30, 45, 834)
    for i in (0, SPE - 1, 10 * SPE, 44 * SPE + 17):
        e = (i + 1) / SPE
        assert lr_at(i, s, total(s), SPE) == pytest.approx(0.05672 * (1 - e / 70) ** 4.9687, rel=1e-12)
        assert damping_at(i, s, SPE) == pytest.approx(0.02345 * 0.5467 ** (e / 10), rel=1e-12)


def test_label_smoothing_off_values():
    assert smoothing_targets(0.1, 1000, "k-1") == pytest.approx((0.9, 0.1 / 999))
    assert smoothing_targets(0.1, 1000, "k") == pytest.approx((0.9, 0.1 / 1000))
    assert smoothing_targets(0.1, 1000, "torch") == pytest.approx((0.9 + 0.1 / 1000, 0.1 / 1000))
    assert recipe("resnet50_bam").label_smoothing_off == "k-1"
    assert recipe("genet_res50_theta").label_smoothing_off == "k"


def test_unlisted_device_count_scales_the_nearest_published_lr():
    s = recipe("resnet50_bam", 2)  # nearest published: 1 device, lr 0.02 -> 0.04 for twice the global batch
    assert (s.batch_size, s.lr, s.devices) == (128, 0.04, 2)
    assert recipe("genet_res50_theta", 4).lr == pytest.approx(0.4)


def test_recipe_errors_are_one_line_and_name_the_problem():
    with pytest.raises(HarnessError, match="did you mean 'resnet50_bam'"):
        resolve_recipe("resnet50_bma", "resnet50_bam", "torch", 1, "s.yaml")
    with pytest.raises(HarnessError, match="is the recipe of resnet50_bam, not gluon_resnet50_v1b"):
        resolve_recipe("resnet50_bam", "gluon_resnet50_v1b", "torch", 1, "s.yaml")
    with pytest.raises(HarnessError, match=r"runs only on the mindspore backend.*'multigrain_sgd' for torch"):
        resolve_recipe("multigrain_thor", "multigrain_resnet50", "torch", 8, "s.yaml")


def test_suite_selects_recipes_by_name_and_its_settings_override(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "models: [resnet50_bam, multigrain_resnet50]\nbackends: [torch, mindspore]\ndevices: [cpu]\n"
        "settings: {recipe: published, devices: 8, data: synthetic, epochs: 1, batch_size: 12}\n"
        "overrides:\n  - match: {model: resnet50_bam}\n    settings: {lr: 0.5}\n")
    cases = {(c.model, c.backend): c.settings for c in load_suite(path).cases}
    bam = cases[("resnet50_bam", "torch")]
    assert (bam.recipe, bam.lr, bam.batch_size, bam.epochs, bam.data) == ("resnet50_bam", 0.5, 12, 1, "synthetic")
    assert bam.schedule_period_epochs == 150 and bam.label_smoothing_off == "k-1"
    assert cases[("multigrain_resnet50", "torch")].recipe == "multigrain_sgd"
    assert cases[("multigrain_resnet50", "torch")].optimizer == "sgd"
    assert cases[("multigrain_resnet50", "mindspore")].recipe == "multigrain_thor"
    assert cases[("multigrain_resnet50", "mindspore")].optimizer == "thor"
    assert cases[("multigrain_resnet50", "mindspore")].lr == 0.05672


def test_every_model_in_published_maps_to_existing_recipes():
    assert set(PUBLISHED) == set(MODELS)
    assert all(name in RECIPES for table in PUBLISHED.values() for name in table.values())
