"""Each rule in one place: a rule decided in several modules drifts apart (one copy changes, the others do not).
For each rule, its home's behaviour on known inputs, and a scan of the sources that fails when a second copy of
its decision comes back. The behaviour of each rule where it is used is tested beside it: noise limits in
test_doctor.py, thread counts in test_launchers.py, the batch rule in test_multigrain.py, class counts in
test_suite.py, the inference rules in test_inference.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import needs_mindspore

from harness.config import VERIFY_LEVELS, Case, Settings
from harness.errors import HarnessError, one_line
from harness.models.losses import loss_for, smoothing_targets
from harness.models.optim import MULTIGRAIN_BETA, decays
from harness.models.specs import MULTIGRAIN_LOSS

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*REPO.glob("harness/**/*.py"), *REPO.glob("plugins/torch/*.py"), *REPO.glob("plugins/mindspore/*.py"),
                  *REPO.glob("plugins/onnxruntime/harness_onnxruntime/*.py")])


def decided_in(pattern: str) -> set[str]:
    """The source files (relative to the repository) in which ``pattern`` (a regular expression) occurs."""
    found = re.compile(pattern)
    return {str(p.relative_to(REPO)) for p in SOURCES if found.search(p.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("pattern,home", [
    # an exception made one line: harness.errors.one_line
    (r'" "\.join\(str\(|' + r"' '\.join\(str\(|splitlines\(\) or \[type\(", set()),
    # the repeated-augmentation batch rule (harness.models.specs.check_batch), applied once, when the suite loads
    (r"batch_size\s*%|%\s*(self\.)?repeats\b", {"harness/models/specs.py"}),
    (r"\bcheck_batch\(", {"harness/models/specs.py", "harness/run/suite.py"}),
    # more classes than num_classes: once, at load
    (r"len\(classes\)\s*>", set()),
    (r"> num_classes|num_classes\s*<", {"harness/data/load_checks.py"}),
    # the verify levels: harness.config.VERIFY_LEVELS
    (r"\"none\", \"header\", \"full\"", {"harness/config.py"}),
    # the train sampler: harness.data.orders (TrainOrder)
    (r"\bepoch_order\(|\bshard_order\(", {"harness/data/orders.py"}),
    # the weight-decay filter (harness.models.optim.decays) and the cross-entropy choice (harness.models.losses)
    (r"\.ndim\s*>\s*1|len\([a-z]+\.shape\)\s*>\s*1|len\(tuple\(shape\)\)", {"harness/models/optim.py"}),
    (r"label_smoothing_off\s*==|smoothing_targets\(", {"harness/models/losses.py"}),
    # the default inference runtime and the {batch} of model_file: harness.backends.hook_checks
    (r"replace\(\"\{batch\}\"", {"harness/backends/hook_checks.py"}),
    (r"next\(iter\([^)]*runtimes", {"harness/backends/hook_checks.py"}),
    # one device for inference: Scenario.multi_device, checked by harness.run.scenarios.check_settings
    (r"runs on one device \(devices: 1\)\"", {"harness/run/scenarios/__init__.py"}),
    # the thread count of a rank: harness.run.launchers.ranks.threads_per_rank
    (r"sched_getaffinity", {"harness/run/launchers/ranks.py", "harness/measure/host.py"}),
])
def test_a_rule_is_decided_in_its_home_only(pattern, home):
    assert decided_in(pattern) == home


def test_one_line_joins_or_keeps_the_first_line_and_never_gives_an_empty_reason():
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line(ValueError("bad value\nC++ stack:\n  frame 1"), first_line=True) == "bad value"
    assert one_line(RuntimeError("\n\n  first  line \nsecond"), first_line=True) == "first line"
    assert one_line(KeyError()) == "KeyError" and one_line("") == ""
    long = one_line("x" * 500, 100, first_line=True)
    assert len(long) < 160 and "characters left out" in long


def test_verify_levels_are_the_settings_the_cli_and_the_manifest_take(tmp_path):
    import argparse

    from harness.cli.main import build_parser
    from harness.config import Settings as S
    from harness.data.manifest import load_manifest

    field = S.__dataclass_fields__["verify"]
    assert field.metadata["choices"] == VERIFY_LEVELS and S.verify in VERIFY_LEVELS
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["data"]
    verify = next(a for a in sub._actions if a.dest == "verify")
    assert tuple(verify.choices) == VERIFY_LEVELS and verify.default == S.verify
    with pytest.raises(HarnessError, match=r"verify: 'deep' is not one of none, header, full"):
        load_manifest(str(tmp_path), "train", "deep")


@pytest.mark.parametrize("name,shape,on,want", [
    ("conv1.weight", (64, 3, 7, 7), "weights", True), ("fc.weight", (10, 512), "weights", True),
    ("fc.bias", (10,), "weights", False), ("bn1.gamma", (64,), "weights", False), ("bn1.bias", (64,), "all", True),
    (MULTIGRAIN_BETA, (), "all", False), (f"loss.{MULTIGRAIN_BETA}", (), "weights", False)])
def test_weight_decay_is_decided_by_the_core(name, shape, on, want):
    assert decays(name, shape, on) is want


def _case(model="gluon_resnet50_v1b", **settings) -> Case:
    return Case(name="c", model=model, backend="torch", device="cpu",
                settings=Settings(num_classes=10, batch_size=6, **settings))


def test_the_loss_is_chosen_by_the_core():
    plain = loss_for(_case())
    assert (plain.label_smoothing, plain.targets, plain.multigrain) == (0.0, None, None)
    own = loss_for(_case(label_smoothing=0.1))  # PyTorch's convention: the framework's own cross-entropy
    assert (own.label_smoothing, own.targets) == (0.1, None)
    explicit = loss_for(_case(label_smoothing=0.1, label_smoothing_off="k-1"))
    assert explicit.label_smoothing == 0.0 and explicit.targets == pytest.approx((0.9, 0.1 / 9))
    assert explicit.targets == smoothing_targets(0.1, 10, "k-1")
    mg = loss_for(_case("multigrain_resnet50", label_smoothing=0.1, label_smoothing_off="k"))
    assert mg.multigrain == MULTIGRAIN_LOSS and mg.repeats == 3 and mg.targets == pytest.approx((0.9, 0.01))


def test_torch_builds_the_loss_the_core_chose():
    from torch import nn

    from harness_torch.train import MultigrainCriterion, SmoothedCrossEntropy, make_criterion

    cpu = __import__("torch").device("cpu")
    own = make_criterion(_case(label_smoothing=0.1), cpu)
    assert isinstance(own, nn.CrossEntropyLoss) and own.label_smoothing == 0.1
    explicit = make_criterion(_case(label_smoothing=0.1, label_smoothing_off="k-1"), cpu)
    assert isinstance(explicit, SmoothedCrossEntropy) and (explicit.on, explicit.off) == pytest.approx((0.9, 0.1 / 9))
    mg = make_criterion(_case("multigrain_resnet50", label_smoothing=0.1, label_smoothing_off="k"), cpu)
    assert isinstance(mg, MultigrainCriterion) and isinstance(mg.ce, SmoothedCrossEntropy) and mg.k == 2


@needs_mindspore
def test_mindspore_builds_the_loss_the_core_chose():
    from mindspore import nn

    from harness.models.specs import get_model
    from harness_mindspore.losses import MultigrainWithLoss, SmoothedCrossEntropy, WithLoss, with_loss

    net = nn.Dense(2, 10)
    own = with_loss(_case(label_smoothing=0.1), net)
    assert isinstance(own, WithLoss) and isinstance(own.loss, nn.CrossEntropyLoss)
    explicit = with_loss(_case(label_smoothing=0.1, label_smoothing_off="k-1"), net)
    assert isinstance(explicit.loss, SmoothedCrossEntropy) and (explicit.loss.on, explicit.loss.off) == pytest.approx(
        (0.9, 0.1 / 9))
    mg = with_loss(_case("multigrain_resnet50"), net)
    assert isinstance(mg, MultigrainWithLoss) and mg.k == get_model("multigrain_resnet50").repeats - 1
    assert mg.beta.name == MULTIGRAIN_BETA
