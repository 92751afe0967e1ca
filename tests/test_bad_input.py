"""Bad input: what the user sees is one line naming the file, key or path (with a near match where
there is one), never a traceback; a bad suite exits 2 before anything runs, a case that cannot use its
input fails with the reason and the run exits 1.

The catalogue, item by item (items tested elsewhere are listed, not repeated here):

- item 1, malformed YAML: ``test_malformed_yaml_names_file_line_and_column`` (here); also
  tests/test_suite.py::test_one_line_errors ("malformed YAML"), tests/test_suite.py::test_yaml_is_loaded_safely,
  tests/test_cli.py::test_bad_suite_is_one_line_exit_2 (exit 2, one line, the file)
- item 2, a setting of the wrong type: tests/test_suite.py::test_one_line_errors
  ("settings.steps: expected integer or null, got str 'three'", "steps: true"),
  tests/test_suite.py::test_set_errors (``--set batch_size=four``: "expected integer")
- item 3, an unknown setting: tests/test_cli.py::test_bad_suite_is_one_line_exit_2
  ("settings.batch_szie: unknown setting; did you mean 'batch_size'?", exit 2, one line),
  tests/test_suite.py::test_one_line_errors (batchsize), tests/test_cli.py::test_bad_set_and_missing_paths (--set)
- item 4, an empty suite: tests/test_suite.py::test_one_line_errors ("" -> "the suite is empty";
  ``devices: []`` and everything excluded -> "the suite has no cases")
- item 5, unknown model, backend, device: tests/test_suite.py::test_one_line_errors
  ("models[0]: unknown model 'gluon_resnet50_v1'; did you mean 'gluon_resnet50_v1b'?",
  "backends[0]: unknown backend 'torhc'; did you mean 'torch'?", "devices[1]: unknown device 'gpux'; did you mean
  'gpu'?"), tests/test_cli.py::test_bad_suite_is_one_line_exit_2 (unknown model, exit 2),
  tests/test_hooks.py::test_unknown_backend_suggests
- item 6, data_root: a missing folder: tests/test_suite.py::test_one_line_errors and
  tests/test_cli.py::test_bad_suite_is_one_line_exit_2 ("data_root '/no/imagenet': no such folder", exit 2);
  a split missing: tests/test_suite.py::test_missing_split_folder; an empty folder and a near match:
  ``test_data_root_without_train_and_val`` (here)
- item 7, a class folder with no images: tests/test_data.py::test_scan_class_without_images (and
  tests/test_data.py::test_scan_no_class_folders, test_scan_missing_split_in_empty_root)
- item 8, an unwritable results folder: ``test_unwritable_results_folder_is_one_line_exit_2`` (here);
  tests/test_runner.py::test_unwritable_results_folder (run_suite)
- item 9, ``weights:`` a missing checkpoint: ``test_weights_missing_file_stops_the_suite`` (here);
  ``test_relative_paths_are_read_from_where_harness_runs`` (here: an existing relative one loads)
- item 10, ``weights:`` a checkpoint of another model or shape: ``test_weights_of_another_model_or_shape`` (here,
  torch on CPU); tests/test_convert.py::test_refuses_another_shape_naming_the_first_parameter and
  test_refuses_another_model (``harness convert``)
- corrupt or non-image files: tests/test_data.py::test_unreadable_images_are_skipped_with_a_count_and_a_warning,
  test_too_many_unreadable_images_fail_in_one_line (past ``max_bad_images``), test_backends_leave_unreadable_images_out
  and tests/test_mindspore_backend.py::test_train_order_matches_torch_skips_unreadable_images_and_resumes_mid_epoch
- training checkpoints: a missing train state is refused by every backend's conformance run
  (tests/test_conformance.py); checkpoints of changed settings are set aside, never loaded
  (tests/test_checkpoints.py::test_checkpoints_of_other_settings_are_set_aside_not_used)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import have


def harness(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], check=False, capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def error_line(out: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints (exit 2, nothing on stdout, no traceback)."""
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and out.stdout == "", out.stdout + out.stderr
    return lines[0]


FAKE = """name: bi
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 2, steps: 1, warmup: 1, eval: false, timeout: 60}
"""


def suite(tmp_path: Path, text: str, name: str = "bi.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_malformed_yaml_names_file_line_and_column(tmp_path):
    path = suite(tmp_path, "models: [gluon_resnet50_v1b\nbackends: [fake]\n")
    out = harness("run", str(path), "--results", str(tmp_path / "r"))
    assert error_line(out) == f"harness: error: {path}:2:9: malformed YAML: expected ',' or ']', but got ':'"
    assert not (tmp_path / "r").exists()


def test_data_root_without_train_and_val(tmp_path, fake_backend):
    empty = tmp_path / "imagenet"
    empty.mkdir()
    path = suite(tmp_path, FAKE.replace("eval: false", f"eval: true, data: folder, data_root: {empty}"))
    out = harness("run", str(path), "--results", str(tmp_path / "r"))
    assert error_line(out) == (f"harness: error: {path}: case gluon_resnet50_v1b-fake-cpu: data_root '{empty}': "
                               f"no 'train' folder (expected {empty}/train/<class>/*.JPEG)")
    (empty / "train").mkdir()
    (empty / "valid").mkdir()  # a near match
    out = harness("run", str(path), "--results", str(tmp_path / "r"))
    assert error_line(out) == (f"harness: error: {path}: case gluon_resnet50_v1b-fake-cpu: data_root '{empty}': "
                               f"no 'val' folder (expected {empty}/val/<class>/*.JPEG); did you mean 'valid'?")
    assert not (tmp_path / "r").exists()


def test_unwritable_results_folder_is_one_line_exit_2(tmp_path, fake_backend):
    path = suite(tmp_path, FAKE)
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = harness("run", str(path), "--results", str(blocker / "results"), "--run-id", "r1")
    assert error_line(out) == (f"harness: error: {blocker}/results/bi/r1: results folder is not writable: "
                               "Not a directory")

    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("running as root: a mode of 0o500 does not stop writing (the path under a file was checked)")
        out = harness("run", str(path), "--results", str(readonly), "--run-id", "r1")
        assert error_line(out) == (f"harness: error: {readonly}/bi/r1: results folder is not writable: "
                                   "Permission denied")
        assert os.listdir(readonly) == []
    finally:
        readonly.chmod(0o700)


def test_weights_missing_file_stops_the_suite(tmp_path, fake_backend):
    missing = tmp_path / "nope.pt"
    path = suite(tmp_path, FAKE)
    out = harness("run", str(path), "--results", str(tmp_path / "r"), "--set", f"weights={missing}")
    assert error_line(out) == (f"harness: error: {path}: case gluon_resnet50_v1b-fake-cpu: weights '{missing}': "
                               "no such file")
    assert not (tmp_path / "r").exists()


def test_relative_paths_are_read_from_where_harness_runs(tmp_path, fake_backend):
    """A case runs in its own folder: a relative ``weights`` (or ``data_root``) is taken from the folder
    ``harness run`` was started in, as the shell's paths are, not from the case's folder."""
    np.savez(tmp_path / "w.npz", w=np.full((4, 10), 0.5))
    suite(tmp_path, FAKE.replace("eval: false", "eval: false, num_classes: 10, weights: w.npz"))
    out = harness("run", "bi.yaml", "--results", "r", "--run-id", "r1", "--no-report", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "r" / "bi" / "r1" / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["config"]["settings"]["weights"] == str(tmp_path / "w.npz")


@pytest.mark.skipif(not have("torch"), reason="torch is not installed (pip install -e '.[torch]')")
def test_weights_of_another_model_or_shape(tmp_path):
    """A checkpoint of gluon_resnet50_v1b with 10 classes: gluon_resnet50_v1b with 1000 classes refuses its
    shape, resnet50_bam refuses it as another model's; each case fails naming the first parameter, the run goes
    on and exits 1."""
    import torch
    from harness_torch.models import build_model

    from harness.models import get_model

    torch.manual_seed(0)
    ckpt = tmp_path / "gluon10.pt"
    torch.save(build_model(get_model("gluon_resnet50_v1b", width=0.25, num_classes=10)).state_dict(), ckpt)
    path = suite(tmp_path, f"""name: bi
models: [gluon_resnet50_v1b, resnet50_bam]
backends: [torch]
devices: [cpu]
settings: {{width: 0.25, image_size: 32, batch_size: 2, num_classes: 10, data: synthetic, steps: 1, warmup: 1,
           eval: false, threads: 1, weights: {ckpt}}}
overrides:
  - match: {{model: gluon_resnet50_v1b}}
    settings: {{num_classes: 1000}}
""")
    out = harness("run", str(path), "--results", str(tmp_path / "r"), "--run-id", "r1", "--quiet", "--no-report")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    records = {r["config"]["model"]: r for r in map(json.loads, (tmp_path / "r" / "bi" / "r1" / "results.jsonl")
                                                    .read_text().splitlines())}
    shape = records["gluon_resnet50_v1b"]
    assert shape["status"] == "failed"
    assert shape["reason"] == (f"weights: '{ckpt}': weights for gluon_resnet50_v1b: parameter 'fc.weight' has shape (10, 512), "
                               "the model expects (1000, 512)")
    other = records["resnet50_bam"]
    assert other["status"] == "failed"
    assert other["reason"] == (f"weights: '{ckpt}': weights for resnet50_bam: parameter 'bam1.channel.fc1.weight' (4, 64) "
                               "is missing (not a checkpoint of this model?)")
    assert "Traceback" not in shape["log_tail"] + other["log_tail"]
    lines = out.stderr.splitlines()
    assert f"[1/2] gluon_resnet50_v1b-torch-cpu: failed: {shape['reason']}" in "\n".join(lines)
    assert f"[2/2] resnet50_bam-torch-cpu: failed: {other['reason']}" in "\n".join(lines)
