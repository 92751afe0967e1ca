"""Tests for harness.models.schedules: every schedule against its closed-form formula.

Expectations are written out here from the formulas (warm-up linear in the
fractional epoch ``step / steps_per_epoch``; MultiStepLR-style step decay; cosine
and linear decay over the post-warm-up span down to ``min_lr``), never taken
from running the code.
"""
from __future__ import annotations

import itertools
import math

import pytest

from harness.config import Settings, coerce_settings
from harness.errors import HarnessError
from harness.models.schedules import lr_at, lr_table


def settings(**kw) -> Settings:
    return Settings(**coerce_settings(kw, "test"))


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-15)


# --- constant ---------------------------------------------------------------------------------

def test_constant_is_lr_at_every_step() -> None:
    s = settings(schedule="constant", lr=0.37)
    for step in (0, 1, 7, 49, 50, 51, 1000):
        assert lr_at(step, s, total_steps=50, steps_per_epoch=10) == approx(0.37)


def test_constant_ignores_min_lr_and_milestones() -> None:
    s = settings(schedule="constant", lr=0.2, min_lr=0.05, milestones=[1, 2], gamma=0.5)
    assert [lr_at(i, s, 40, 10) for i in (0, 15, 25, 39)] == [approx(0.2)] * 4


# --- warm-up ------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "linear"])
def test_warmup_is_linear_from_init_to_lr(schedule: str) -> None:
    lr, init, warm_epochs, spe = 0.8, 0.001, 3, 10
    s = settings(schedule=schedule, lr=lr, lr_warmup_init=init, lr_warmup_epochs=warm_epochs,
                 min_lr=1e-5, milestones=[5], gamma=0.1)
    warm_steps = warm_epochs * spe
    total = 100
    assert lr_at(0, s, total, spe) == approx(init)
    for step in range(warm_steps):
        expected = init + (lr - init) * step / warm_steps
        assert lr_at(step, s, total, spe) == approx(expected), step
    # a third and two thirds of the way through
    assert lr_at(10, s, total, spe) == approx(init + (lr - init) / 3)
    assert lr_at(20, s, total, spe) == approx(init + 2 * (lr - init) / 3)
    # the end of warm-up reaches the peak learning rate (start of every post-warm-up schedule)
    assert lr_at(warm_steps, s, total, spe) == approx(lr)


def test_warmup_uses_fractional_epochs() -> None:
    # half an epoch of warm-up over 8 steps per epoch: 4 warm-up steps
    s = settings(schedule="constant", lr=1.0, lr_warmup_init=0.0, lr_warmup_epochs=0.5)
    assert [lr_at(i, s, 16, 8) for i in range(6)] == [approx(v) for v in (0.0, 0.25, 0.5, 0.75, 1.0, 1.0)]


def test_warmup_can_start_above_lr() -> None:
    s = settings(schedule="constant", lr=0.1, lr_warmup_init=0.5, lr_warmup_epochs=1)
    assert lr_at(0, s, 20, 4) == approx(0.5)
    assert lr_at(2, s, 20, 4) == approx(0.3)
    assert lr_at(4, s, 20, 4) == approx(0.1)


# --- step ---------------------------------------------------------------------------------------

def test_step_schedule_around_each_milestone() -> None:
    lr, gamma, spe = 0.2, 0.1, 10
    milestones = (30, 60, 90)
    s = settings(schedule="step", lr=lr, gamma=gamma, milestones=list(milestones))
    assert s.milestones == (30.0, 60.0, 90.0)
    total = 120 * spe
    assert lr_at(0, s, total, spe) == approx(lr)
    for k, m in enumerate(milestones):
        before, at, after = m * spe - 1, m * spe, m * spe + 1
        assert lr_at(before, s, total, spe) == approx(lr * gamma ** k), (m, "before")
        # like torch's MultiStepLR: the decay applies from the milestone epoch itself
        assert lr_at(at, s, total, spe) == approx(lr * gamma ** (k + 1)), (m, "at")
        assert lr_at(after, s, total, spe) == approx(lr * gamma ** (k + 1)), (m, "after")
    assert lr_at(total - 1, s, total, spe) == approx(lr * gamma ** 3)


def test_step_schedule_every_epoch_against_formula() -> None:
    lr, gamma, spe = 1.6, 0.5, 4
    milestones = (2.5, 4, 7)
    s = Settings(schedule="step", lr=lr, gamma=gamma, milestones=milestones)
    total = 10 * spe
    for step in range(total):
        epoch = step / spe
        passed = sum(1 for m in milestones if epoch >= m)
        assert lr_at(step, s, total, spe) == approx(lr * gamma ** passed), step


def test_step_schedule_milestone_order_does_not_matter() -> None:
    a = Settings(schedule="step", lr=0.1, gamma=0.1, milestones=(6.0, 2.0, 4.0))
    b = Settings(schedule="step", lr=0.1, gamma=0.1, milestones=(2.0, 4.0, 6.0))
    assert lr_table(a, 80, 10) == lr_table(b, 80, 10)
    assert lr_at(45, a, 80, 10) == approx(0.1 * 0.1 ** 2)


def test_step_schedule_after_warmup() -> None:
    s = settings(schedule="step", lr=0.4, gamma=0.1, milestones=[3, 6], lr_warmup_epochs=2, lr_warmup_init=0.0)
    spe, total = 5, 50
    assert lr_at(5, s, total, spe) == approx(0.2)          # mid warm-up
    assert lr_at(10, s, total, spe) == approx(0.4)         # end of warm-up, before milestone 3
    assert lr_at(14, s, total, spe) == approx(0.4)
    assert lr_at(15, s, total, spe) == approx(0.04)        # epoch 3
    assert lr_at(30, s, total, spe) == approx(0.004)       # epoch 6


# --- cosine -------------------------------------------------------------------------------------

def test_cosine_without_warmup_closed_form() -> None:
    lr, min_lr, total, spe = 0.5, 0.0, 100, 10
    s = settings(schedule="cosine", lr=lr, min_lr=min_lr)
    for step in range(total):
        expected = min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * step / total))
        assert lr_at(step, s, total, spe) == approx(expected), step
    assert lr_at(0, s, total, spe) == approx(lr)
    assert lr_at(50, s, total, spe) == approx(lr / 2)
    assert lr_at(25, s, total, spe) == approx(lr * (1 + math.sqrt(0.5)) / 2)


def test_cosine_with_warmup_and_min_lr() -> None:
    # The gluon_resnet50_v1b recipe shape: warm-up 3 epochs from 1e-4, cosine to min lr 1e-5.
    lr, min_lr, init, warm, spe, epochs = 0.2, 1e-5, 1e-4, 3, 10, 13
    s = settings(schedule="cosine", lr=lr, min_lr=min_lr, lr_warmup_init=init, lr_warmup_epochs=warm)
    total = epochs * spe                       # 130 steps
    warm_steps = warm * spe                    # 30
    span = total - warm_steps                  # 100 steps after warm-up
    # end of warm-up: the peak
    assert lr_at(warm_steps, s, total, spe) == approx(lr)
    # midpoint of the post-warm-up span: halfway between lr and min_lr
    assert lr_at(warm_steps + span // 2, s, total, spe) == approx((lr + min_lr) / 2)
    # a quarter of the way: cos(pi/4)
    assert lr_at(warm_steps + span // 4, s, total, spe) == approx(
        min_lr + (lr - min_lr) * (1 + math.cos(math.pi / 4)) / 2)
    # every post-warm-up step against the formula
    for step in range(warm_steps, total):
        p = (step - warm_steps) / span
        expected = min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))
        assert lr_at(step, s, total, spe) == approx(expected), step
    # monotone non-increasing after warm-up, never below min_lr
    table = lr_table(s, total, spe)
    post = table[warm_steps:]
    assert all(a >= b for a, b in itertools.pairwise(post))
    assert min(post) > min_lr
    # at and beyond the end: the floor
    assert lr_at(total, s, total, spe) == approx(min_lr)
    assert lr_at(total + 17, s, total, spe) == approx(min_lr)


# --- linear -------------------------------------------------------------------------------------

def test_linear_matches_genet_formula() -> None:
    # GENet theta / theta-plus: lr_i = 0.8 * (1 - i / T) over all T steps
    total, spe = 50, 10
    s = settings(schedule="linear", lr=0.8)
    for i in range(total):
        assert lr_at(i, s, total, spe) == approx(0.8 * (1 - i / total)), i
    assert lr_at(25, s, total, spe) == approx(0.4)


def test_linear_with_warmup_and_min_lr() -> None:
    lr, min_lr, init, warm, spe, total = 1.0, 0.1, 0.0, 2, 5, 60
    s = settings(schedule="linear", lr=lr, min_lr=min_lr, lr_warmup_init=init, lr_warmup_epochs=warm)
    warm_steps = warm * spe                    # 10
    span = total - warm_steps                  # 50
    assert lr_at(5, s, total, spe) == approx(0.5)
    assert lr_at(warm_steps, s, total, spe) == approx(lr)
    assert lr_at(warm_steps + span // 2, s, total, spe) == approx((lr + min_lr) / 2)
    for step in range(warm_steps, total):
        expected = min_lr + (lr - min_lr) * (1 - (step - warm_steps) / span)
        assert lr_at(step, s, total, spe) == approx(expected), step
    assert lr_at(total, s, total, spe) == approx(min_lr)
    assert lr_at(total + 100, s, total, spe) == approx(min_lr)


# --- lr_table -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(schedule="constant", lr=0.3),
    dict(schedule="step", lr=0.3, milestones=[1, 3], gamma=0.2, lr_warmup_epochs=0.5, lr_warmup_init=0.01),
    dict(schedule="cosine", lr=0.3, min_lr=0.003, lr_warmup_epochs=1, lr_warmup_init=0.0),
    dict(schedule="linear", lr=0.3, min_lr=0.01),
])
def test_lr_table_equals_lr_at(kw: dict) -> None:
    s = settings(**kw)
    total, spe = 37, 7
    table = lr_table(s, total, spe)
    assert len(table) == total
    assert table == [lr_at(i, s, total, spe) for i in range(total)]
    assert all(isinstance(v, float) for v in table)


def test_lr_table_of_cosine_starts_at_lr_and_ends_near_min_lr() -> None:
    s = settings(schedule="cosine", lr=0.1, min_lr=0.001)
    table = lr_table(s, 1000, 100)
    assert table[0] == approx(0.1)
    assert table[500] == approx((0.1 + 0.001) / 2)
    assert table[-1] == pytest.approx(0.001, rel=1e-3)


def test_schedule_choices_are_validated() -> None:
    with pytest.raises(HarnessError, match="schedule"):
        coerce_settings({"schedule": "polynomial"}, "test")
