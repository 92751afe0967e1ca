"""Validation once, at load: rules between settings and what a backend declares are refused before anything runs
(exit 2, one line naming the case and the setting), never after training."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_input import error_line, harness

from harness.config import Settings
from harness.errors import HarnessError
from harness.run.scenarios import check_settings
from harness.run.suite import load_suite

TORCH = """name: v
models: [gluon_resnet50_v1b]
backends: [torch]
devices: [cpu]
settings: {{batch_size: 2, steps: 1, warmup: 1, width: 0.125, image_size: 32, {extra}}}
"""


def refused(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "v.yaml"
    path.write_text(TORCH.format(extra=extra))
    line = error_line(harness("run", str(path), "--results", str(tmp_path / "results")))
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("results.jsonl"))
    return line


def test_a_wrong_export_format_is_refused_at_load_with_a_near_match(tmp_path):
    line = refused(tmp_path, "export: [onxx]")
    assert line.startswith(f"harness: error: {tmp_path / 'v.yaml'}: case gluon_resnet50_v1b-torch-cpu: ")
    assert "export: backend 'torch' does not support 'onxx' (it supports: onnx," in line
    assert line.endswith("did you mean 'onnx'?")


def test_an_option_the_backend_does_not_declare_is_refused_at_load(tmp_path):
    assert "optimizer: backend 'torch' does not support 'thor' (it supports: sgd)" in refused(tmp_path,
                                                                                              "optimizer: thor")
    assert "mode: backend 'torch' does not support 'graph' (it supports: default, eager, compile)" in refused(
        tmp_path, "mode: graph")
    assert "amp_level: backend 'torch' does not support 'O3'" in refused(tmp_path, "amp_level: O3, precision: bf16")
    assert "jit_level: backend 'torch' does not support 'O1' (it supports: auto)" in refused(tmp_path,
                                                                                             "jit_level: O1")


def test_checkpoints_with_a_target_are_refused_at_load(tmp_path):
    line = refused(tmp_path, "data: tiny, target_top1: 50, checkpoint_every: 2")
    assert line.endswith("checkpoint_every with target_top1: time to accuracy is measured on an uninterrupted run, "
                         "so it does not checkpoint")


@pytest.mark.parametrize("values, message", [
    ({"amp_level": "O0", "precision": "bf16"}, "amp_level O0 means fp32, but precision is bf16"),
    ({"amp_level": "O2"}, "amp_level O2 needs precision fp16 or bf16"),
    ({"jit_level": "O1", "mode": "pynative"}, "jit_level O1 sets how a graph compiles, but mode pynative runs op"),
    ({"jit_level": "O2"}, "jit_level: 'O2' is not one of auto, O0, O1"),
    ({"checkpoint_every": 2, "checkpoint_every_epochs": 1.0}, "set one of them, not both"),
    ({"scenario": "inference", "devices": 2}, "scenario inference runs on one device"),
    ({"target_top1": 101, "data": "tiny"}, "target_top1: 101.0 is above the maximum 100"),
    ({"inference_batch_sizes": [4, 0]}, "inference_batch_sizes: 0 is below the minimum 1"),
    ({"label_smoothing": 5}, "label_smoothing: 5.0 is above the maximum"),
    ({"seed": 2**70}, "seed: 1180591620717411303424 is above the maximum"),
    ({"scenario": "export"}, "scenario export: set export to the formats to write"),
    ({"scenario": "trian"}, "unknown scenario 'trian'; did you mean 'train'?"),
    ({"steps": None}, "steps: null trains for epochs; set steps or epochs"),
])
def test_settings_cannot_be_made_unvalidated(values, message):
    """Types, ranges and the core's rules when settings are made; the scenario's rules when a suite loads."""
    with pytest.raises(HarnessError, match=None) as exc:
        check_settings(Settings(**values))
    assert message in str(exc.value)


def test_the_scenario_rules_run_when_a_suite_loads(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("models: [gluon_resnet50_v1b]\nbackends: [torch]\ndevices: [cpu]\nsettings: {scenario: export}\n")
    with pytest.raises(HarnessError) as exc:
        load_suite(suite, check_backends=False)
    assert "scenario export: set export to the formats to write" in str(exc.value)
