"""Scenarios and launchers are roles with registries: a package of its own adds one of each through an entry point
and harness runs it, with nothing in the core changed; unknown names get a near match."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
from conftest import HERE, make_dist

from harness.errors import HarnessError
from harness.results.records import read_records
from harness.run.launchers import LAUNCHERS, get_launcher
from harness.run.runner import run_suite
from harness.run.scenarios import SCENARIOS, get_scenario
from harness.run.suite import load_suite

SUITE = """name: roles
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {{batch_size: 2, steps: 4, warmup: 1, eval: false, timeout: 120, {extra}}}
"""


@pytest.fixture
def extra(tmp_path, fake_backend, monkeypatch):
    """The outside package, registered like an installed one (a dist-info folder with its entry points)."""
    root = make_dist(tmp_path / "extra", "harness-roles-extra", HERE / "roles" / "harness_roles_extra.py", {})
    (next(root.glob("*.dist-info")) / "entry_points.txt").write_text(
        "[harness.scenarios]\npredict = harness_roles_extra:Predict\n\n"
        "[harness.launchers]\nspawn = harness_roles_extra:Spawn\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ["PYTHONPATH"]]))
    importlib.invalidate_caches()
    for registry in (SCENARIOS, LAUNCHERS):
        monkeypatch.setattr(registry, "_loaded", {})
    yield root
    sys.modules.pop("harness_roles_extra", None)


def run(tmp_path: Path, extra_settings: str):
    path = tmp_path / "roles.yaml"
    path.write_text(SUITE.format(extra=extra_settings))
    run_dir = run_suite(load_suite(path), tmp_path / "results", run_id="r", quiet=True)
    return read_records(run_dir / "results.jsonl")


def test_a_scenario_from_another_package_runs_on_a_backend_with_its_hooks(tmp_path, extra):
    assert "predict" in SCENARIOS.names() and get_scenario("predict").hooks == ("harness_build_model",
                                                                                "harness_predict")
    (rec,) = run(tmp_path, "scenario: predict")
    assert rec["status"] == "ok", rec["reason"]
    assert rec["metrics"]["predict"]["ms_per_batch"]["count"] == 4 and rec["metrics"]["predict"]["first_s"] > 0
    assert "train" not in rec["metrics"]


def test_a_launcher_from_another_package_starts_and_merges_the_ranks(tmp_path, extra, monkeypatch):
    monkeypatch.setenv("HARNESS_FAKE_LAUNCHER", "spawn")
    (rec,) = run(tmp_path, "devices: 2")
    assert rec["status"] == "ok", rec["reason"]
    assert [r["rank"] for r in rec["metrics"]["ranks"]] == [0, 1]
    assert rec["metrics"]["world_size"] == 2 and rec["metrics"]["train"]["global_batch"] == 4


def test_unknown_names_are_one_line_with_a_near_match(tmp_path, fake_backend, monkeypatch):
    with pytest.raises(HarnessError, match=r"unknown launcher 'torchrn'; did you mean 'torchrun'\?"):
        get_launcher("torchrn")
    path = tmp_path / "roles.yaml"
    path.write_text(SUITE.format(extra="scenario: evl"))
    with pytest.raises(HarnessError, match=r"scenario: unknown scenario 'evl'; did you mean 'eval'\?"):
        load_suite(path)
    monkeypatch.setenv("HARNESS_FAKE_LAUNCHER", "torchrn")  # what a backend names is checked at load too
    path.write_text(SUITE.format(extra="devices: 2"))
    with pytest.raises(HarnessError, match=r"devices: backend 'fake' starts several devices with unknown launcher "
                                           r"'torchrn'; did you mean 'torchrun'\?"):
        load_suite(path)
