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
- the ``cluster:`` section for ``--on slurm``: an unknown key with its near match, a time Slurm would not take, a
  count below 1, an sbatch option without its dash (tests/test_slurm.py::test_a_wrong_cluster_section_is_one_line_
  naming_the_key, test_set_refuses_an_unknown_cluster_key); a case no whole number of nodes holds stops the run before
  anything is submitted (test_a_case_that_cannot_be_placed_stops_the_run_before_anything_is_submitted)
- corrupt or non-image files: tests/test_data.py::test_unreadable_images_are_skipped_with_a_count_and_a_warning,
  test_too_many_unreadable_images_fail_in_one_line (past ``max_bad_images``); every backend's streams leave them
  out: tests/test_backend_contract.py::test_folder_streams_leave_out_unreadable_images
- training checkpoints: a missing train state is refused by every backend's conformance run
  (tests/test_conformance.py); checkpoints of changed settings are set aside, never loaded
  (tests/test_checkpoints.py::test_checkpoints_of_other_settings_are_set_aside_not_used)

Hostile input, kind by kind (all here):

- hostile 1, a suite of another encoding: Latin-1 (the line and the byte named), UTF-16 with and without a byte-order
  mark, a binary file (a NUL byte): exit 2, one line naming the file, nothing run; a UTF-8 byte-order mark is
  dropped: ``test_suite_of_another_encoding_or_binary_is_one_line_exit_2``
- hostile 2, YAML aliases: a "billion laughs" bomb (8 levels of 10 aliases) is refused within seconds, a recursive
  alias is refused naming its line: ``test_yaml_alias_bomb_and_recursive_alias_are_refused_quickly``; merge keys and
  small aliases still load, a 10**30-value bomb is counted without being expanded, ``max_nodes`` is the bound:
  ``test_load_yaml_keeps_merge_keys_and_small_aliases``
- hostile 3, a key given twice (in a block mapping, at the top level, in a flow mapping): both line numbers named:
  ``test_duplicate_keys_name_both_lines``
- hostile 4, values out of range at load: ``seed`` 2**70, ``label_smoothing`` 5, ``target_top1`` 1000,
  ``inference_batch_sizes`` [0] and [1, -1], an ``image_size`` or ``batch_size`` far past the host's memory:
  ``test_out_of_range_settings_are_refused_at_load``; the range error comes before the backend's scenario check:
  ``test_inference_scenario_on_the_fake_backend_is_refused_after_the_range_checks``; an override matching no case:
  ``test_override_that_matches_no_case_is_refused``; the memory estimate against a small host (CPU counts
  activations, an accelerator only the input batch): ``test_check_memory_against_a_small_host``
- hostile 5, data that mean nothing: train and val with different class folders (named), a single class:
  ``test_train_and_val_classes_must_agree_and_be_two_at_least``
- hostile 6, images of every mode (16-bit greyscale scaled from 0..65535, not clipped to white; float 0..1; CMYK,
  palette with transparency (one index, or an alpha per entry: through RGBA, no Pillow warning), RGBA, LA, 1-bit,
  8-bit greyscale) become RGB by their meaning, and the eval transform takes each:
  ``test_images_of_every_mode_become_rgb_by_their_meaning``
- hostile 7, truncated images: a JPEG, a progressive JPEG and a PNG cut short are found by the header check, a whole
  progressive JPEG and one with NUL padding after its end pass:
  ``test_truncated_jpeg_and_png_are_found_by_their_header_check``; a BMP cut in half (its header is fine) is replaced
  by the next sample while loading (PAD_LABEL when scored), named once, counted, and past ``max_bad_images`` the case
  fails in one line: ``test_images_that_fail_only_while_decoding_are_replaced_counted_and_limited``; end to end in
  torch and MindSpore (slow): ``test_truncated_images_found_while_training_end_to_end``
- hostile 8, symlink loops: a class folder linked to itself is one line naming it (scan and ``harness run``), a file
  linked to itself is an unreadable image counted against ``max_bad_images``:
  ``test_symlink_loops_are_one_line_or_counted_as_unreadable``
- hostile 9, NaN or infinite weights are refused naming the tensor and the count; integer tensors are not checked:
  ``test_non_finite_weights_are_refused_naming_the_tensor``
- hostile 10, result files given to ``harness report`` and ``harness compare`` (either side): empty, another tool's
  JSON, a harness record without ``case``, Latin-1, UTF-16, binary: one line, exit 2; a torn last line is a
  warning: ``test_hostile_result_files_are_one_line_exit_2``,
  ``test_compare_refuses_hostile_result_files_on_either_side``; ``--resume`` of a folder whose run.json is a JSON list,
  UTF-16, torn, or of another suite: ``test_resume_of_a_folder_whose_run_json_is_not_a_run``
- hostile 11, a huge message with line breaks becomes one bounded line keeping its start and end:
  ``test_one_line_bounds_a_huge_message``
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from backends import params_with
from conftest import have, image_folder


def harness(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli.main", *args], check=False, capture_output=True,
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

    from harness.models.specs import get_model
    from harness_torch.models import build_model

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
    assert shape["reason"] == (f"weights: '{ckpt}': weights for gluon_resnet50_v1b: parameter 'fc.weight' has shape "
                               "(10, 512), the model expects (1000, 512)")
    other = records["resnet50_bam"]
    assert other["status"] == "failed"
    assert other["reason"] == (f"weights: '{ckpt}': weights for resnet50_bam: parameter 'bam1.channel.fc1.weight' "
                               "(4, 64) is missing (not a checkpoint of this model?)")
    assert "Traceback" not in shape["log_tail"] + other["log_tail"]
    lines = out.stderr.splitlines()
    assert f"[1/2] gluon_resnet50_v1b-torch-cpu: failed: {shape['reason']}" in "\n".join(lines)
    assert f"[2/2] resnet50_bam-torch-cpu: failed: {other['reason']}" in "\n".join(lines)


# --- hostile input: files of another encoding, YAML bombs, out-of-range values, data that means nothing ---------

def test_suite_of_another_encoding_or_binary_is_one_line_exit_2(tmp_path, fake_backend):
    """A suite saved as Latin-1 (the line and the byte named), as UTF-16 (with or without a byte-order mark), or a
    binary file: exit 2, one line naming the file, nothing run; a UTF-8 byte-order mark is only dropped."""
    from harness.files import read_text

    cases = [(("# caf\xe9\n" + FAKE).encode("latin-1"), ":1: not UTF-8 text (byte 0xe9; a file saved as Latin-1"),
             (("name: bi\n# caf\xe9\n" + FAKE[9:]).encode("latin-1"), ":2: not UTF-8 text (byte 0xe9"),
             (FAKE.encode("utf-16"), ": the file is UTF-16 text; save it as UTF-8"),
             (FAKE.encode("utf-16-le"), ": the file is UTF-16 text; save it as UTF-8"),  # no byte-order mark
             (bytes(range(256)), ":1: a binary file (a NUL byte), not UTF-8 text")]
    for i, (raw, message) in enumerate(cases):
        path = tmp_path / f"bi{i}.yaml"
        path.write_bytes(raw)
        out = harness("run", str(path), "--results", str(tmp_path / "r"))
        assert error_line(out).startswith(f"harness: error: {path}{message}"), (raw[:20], out.stderr)
    assert not (tmp_path / "r").exists()
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(FAKE.encode("utf-8-sig"))
    assert read_text(bom) == FAKE


def _alias_bomb(levels: int = 8, fanout: int = 10) -> str:
    """"Billion laughs": ``levels`` anchors, each a list of ``fanout`` aliases of the one before (10**8 values)."""
    lines = ["description:", f"  - &a0 [{', '.join(['lol'] * fanout)}]"]
    lines += [f"  - &a{n} [{', '.join([f'*a{n - 1}'] * fanout)}]" for n in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_and_recursive_alias_are_refused_quickly(tmp_path, fake_backend):
    path = suite(tmp_path, FAKE + _alias_bomb())
    out = harness("run", str(path), "--results", str(tmp_path / "r"), timeout=60)  # expanded, it would never end
    assert error_line(out) == (f"harness: error: {path}: its YAML aliases expand to more than 100,000 values (an alias "
                               "bomb?); refused before expanding them")
    path = suite(tmp_path, FAKE + "description: &a [*a]\n")
    out = harness("run", str(path), "--results", str(tmp_path / "r"), timeout=60)
    assert error_line(out) == (f"harness: error: {path}:6: a recursive YAML alias (a value that contains itself) is "
                               "refused")
    assert not (tmp_path / "r").exists()


def test_load_yaml_keeps_merge_keys_and_small_aliases():
    import time

    from harness.errors import HarnessError
    from harness.files import load_yaml

    assert load_yaml("base: &b {x: 1}\nother: {<<: *b, y: 2}\n", "s.yaml")["other"] == {"x": 1, "y": 2}
    assert load_yaml("base: &b {x: 1}\nother: {<<: *b, x: 3}\n", "s.yaml")["other"] == {"x": 3}  # not a duplicate
    doc = load_yaml("a: &l [1, 2, 3]\nb: [*l, *l]\n", "s.yaml")
    assert doc == {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}
    assert load_yaml(_alias_bomb(levels=3), "s.yaml")["description"][3][0][0][0] == ["lol"] * 10  # 1,000 values
    start = time.perf_counter()
    with pytest.raises(HarnessError, match=r"^s\.yaml: its YAML aliases expand to more than 100,000 values"):
        load_yaml(_alias_bomb(levels=30), "s.yaml")  # 10**30 values: only counting without expanding ends
    assert time.perf_counter() - start < 5
    with pytest.raises(HarnessError, match=r"^s\.yaml: its YAML aliases expand to more than 1,000 values"):
        load_yaml(_alias_bomb(levels=3), "s.yaml", max_nodes=1000)
    with pytest.raises(HarnessError, match=r"^s\.yaml:2: a recursive YAML alias"):
        load_yaml("x: 1\ny: &a {k: [*a]}\n", "s.yaml")


def test_duplicate_keys_name_both_lines(tmp_path, fake_backend):
    text = """name: bi
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings:
  steps: 2000
  batch_size: 2
  warmup: 1
  eval: false
  steps: 2
"""
    path = suite(tmp_path, text)
    out = harness("run", str(path), "--results", str(tmp_path / "r"))
    assert error_line(out) == (f"harness: error: {path}:10: key 'steps' given twice in one mapping (first on line 6); "
                               "YAML would keep the last one silently")
    path = suite(tmp_path, FAKE.replace("settings:", "backends: [fake]\nsettings:"))
    out = harness("run", str(path), "--results", str(tmp_path / "r"))
    assert error_line(out).startswith(f"harness: error: {path}:5: key 'backends' given twice in one mapping (first on "
                                      "line 3)")
    path = suite(tmp_path, FAKE.replace("steps: 1,", "steps: 2000, steps: 2,"))  # in a flow mapping, one line
    out = harness("run", str(path), "--results", str(tmp_path / "r"))
    assert error_line(out).startswith(f"harness: error: {path}:5: key 'steps' given twice in one mapping (first on "
                                      "line 5)")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("setting, message", [
    ("seed: 1180591620717411303424", "settings.seed: 1180591620717411303424 is above the maximum 4294967295"),  # 2**70
    ("label_smoothing: 5", "settings.label_smoothing: 5.0 is above the maximum 0.999"),
    ("target_top1: 1000", "settings.target_top1: 1000.0 is above the maximum 100"),
    ("scenario: inference, inference_batch_sizes: [0]", "settings.inference_batch_sizes: 0 is below the minimum 1"),
    ("scenario: inference, inference_batch_sizes: [1, -1]",
     "settings.inference_batch_sizes: -1 is below the minimum 1"),
    ("image_size: 1000000", "case gluon_resnet50_v1b-fake-cpu: batch_size 2 x image_size 1000000: needs about "),
    ("batch_size: 100000000", "case gluon_resnet50_v1b-fake-cpu: batch_size 100000000 x image_size 224: needs about "),
])
def test_out_of_range_settings_are_refused_at_load(tmp_path, fake_backend, setting, message):
    """Each is refused before any case runs (the fake backend runs no inference scenario: a range error comes first,
    as the scenario is checked against the backend only after the settings are read)."""
    if setting.startswith("batch_size"):
        path = suite(tmp_path, FAKE.replace("batch_size: 2", setting))
    else:
        path = suite(tmp_path, FAKE.replace("batch_size: 2, ", f"batch_size: 2, {setting}, "))
    out = harness("run", str(path), "--results", str(tmp_path / "r"))
    line = error_line(out)
    assert line.startswith(f"harness: error: {path}: {message}"), line
    if "needs about" in message:
        assert "GiB of host memory (input batch and activations), this host has " in line
        assert line.endswith("GiB: lower batch_size or image_size")
    assert not (tmp_path / "r").exists()


def test_inference_scenario_on_the_fake_backend_is_refused_after_the_range_checks(tmp_path, fake_backend):
    """The premise of the inference_batch_sizes rows above: with a valid batch list the same suite is refused for
    another reason (the fake backend does not run the inference scenario)."""
    path = suite(tmp_path, FAKE.replace("batch_size: 2, ", "batch_size: 2, scenario: inference, "
                                        "inference_batch_sizes: [1], "))
    line = error_line(harness("run", str(path), "--results", str(tmp_path / "r")))
    assert line.startswith(f"harness: error: {path}: case gluon_resnet50_v1b-fake-cpu: scenario: backend 'fake' does "
                           "not run scenario 'inference'"), line


def test_override_that_matches_no_case_is_refused(tmp_path, fake_backend):
    path = suite(tmp_path, FAKE + "overrides:\n  - match: {backend: fakee}\n    settings: {steps: 3}\n")
    assert error_line(harness("run", str(path), "--results", str(tmp_path / "r"))) == (
        f"harness: error: {path}: overrides[0].match {{'backend': 'fakee'}}: matches no case; did you mean 'fake'?")


def test_check_memory_against_a_small_host():
    from harness.config import Case, Settings
    from harness.errors import HarnessError
    from harness.run.validate import check_memory

    def case(device="cpu", **kw):
        return Case("c", "gluon_resnet50_v1b", "fake", device, Settings(**kw))

    big = case(batch_size=256, image_size=224)  # about 22 GB of float32 activations on CPU
    with pytest.raises(HarnessError) as exc:
        check_memory(big, 8 * 1024)
    assert str(exc.value) == ("batch_size 256 x image_size 224: needs about 20 GiB of host memory (input batch and "
                              "activations), this host has 8 GiB: lower batch_size or image_size")
    check_memory(big, 64 * 1024)  # fits
    check_memory(big, None)  # memory unknown: nothing refused
    check_memory(case("gpu", batch_size=256, image_size=224), 8 * 1024)  # on an accelerator only the inputs count
    with pytest.raises(HarnessError,
                       match=r"needs about 0 GiB of host memory \(the input batch\), this host has 0 GiB"):
        check_memory(case("gpu", batch_size=256, image_size=224), 100)
    check_memory(case(batch_size=2, image_size=32, width=0.25), 64)


def _images(root: Path, layout: dict[str, list[str]], n: int = 2, ext: str = "jpg", size: int = 40) -> Path:
    return image_folder(root, layout, n, ext, size)


def test_train_and_val_classes_must_agree_and_be_two_at_least(tmp_path, fake_backend):
    root = _images(tmp_path / "data", {"train": ["cat", "dog"], "val": ["dog", "zebra"]})
    path = suite(tmp_path, FAKE.replace("eval: false", f"eval: true, data: folder, data_root: {root}"))
    assert error_line(harness("run", str(path), "--results", str(tmp_path / "r"))) == (
        f"harness: error: {path}: case gluon_resnet50_v1b-fake-cpu: data_root '{root}': train and val have different "
        "class folders (only in train: cat; only in val: zebra): a label would mean another class in each split")
    one = _images(tmp_path / "one", {"train": ["cat"], "val": ["cat"]})
    path = suite(tmp_path, FAKE.replace("eval: false", f"eval: true, data: folder, data_root: {one}"))
    assert error_line(harness("run", str(path), "--results", str(tmp_path / "r"))) == (
        f"harness: error: {path}: case gluon_resnet50_v1b-fake-cpu: data_root '{one}': 1 class folder(s) in train/: "
        "accuracy needs at least two classes (every prediction of one class is right)")
    assert not (tmp_path / "r").exists()


# --- images of every mode, truncated images --------------------------------------------------------------------

def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    from harness.data.images import to_rgb

    with Image.open(path) as im:
        rgb = to_rgb(im)
        a = np.asarray(rgb)
    assert rgb.mode == "RGB" and a.dtype == np.uint8 and a.shape == (30, 40, 3), (path, rgb.mode, a.shape)
    return a


def test_images_of_every_mode_become_rgb_by_their_meaning(tmp_path):
    """16-bit greyscale is scaled from 0..65535 (a plain convert("RGB") clips it to almost white), float from 0..1;
    CMYK, palette with transparency, RGBA, LA, 1-bit and 8-bit greyscale keep their colours; the eval transform
    takes each."""
    from PIL import Image

    from harness.data.images import MEAN, STD, Preprocess

    ramp = np.linspace(0, 65535, 30 * 40).round().astype(np.uint16).reshape(30, 40)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    Image.fromarray(np.full((30, 40), 65535, np.uint16)).save(tmp_path / "white16.png")
    Image.fromarray(np.zeros((30, 40), np.uint16)).save(tmp_path / "black16.png")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red
    palette = Image.new("P", (40, 30), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (20, 0, 40, 30))  # right half green, left half red and transparent
    palette.save(tmp_path / "palette.png", transparency=0)
    palette.save(tmp_path / "palette_alpha.png", transparency=bytes([0, 128]))  # an alpha per palette entry
    Image.new("RGBA", (40, 30), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    Image.new("LA", (40, 30), (100, 50)).save(tmp_path / "la.png")
    bits = Image.new("1", (40, 30), 0)
    bits.paste(1, (0, 0, 20, 30))
    bits.save(tmp_path / "bits.png")
    Image.new("L", (40, 30), 77).save(tmp_path / "grey.png")
    Image.fromarray(np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40), "F").save(tmp_path / "float.tif")
    Image.fromarray(np.full((30, 40), 0.5, np.float32), "F").save(tmp_path / "half.tif")

    with Image.open(tmp_path / "ramp16.png") as im:
        assert im.mode.startswith("I")  # read back as 16-bit, so the test is of the 16-bit path
    assert abs(_pixels(tmp_path / "ramp16.png").mean() - 127.5) < 1  # mid-grey, not about 255
    assert (_pixels(tmp_path / "white16.png") == 255).all()
    assert (_pixels(tmp_path / "black16.png") == 0).all()
    red = _pixels(tmp_path / "cmyk.jpg").reshape(-1, 3).mean(axis=0)
    assert red[0] > 240 and red[1] < 15 and red[2] < 15, red
    for name in ("palette.png", "palette_alpha.png"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # through RGBA, as Pillow asks ("... should be converted to RGBA images")
            p = _pixels(tmp_path / name)
        assert (p[:, 20:] == (0, 255, 0)).all() and (p[:, :20] == (255, 0, 0)).all(), name
    assert (_pixels(tmp_path / "rgba.png") == (10, 20, 30)).all()  # alpha dropped, colour kept
    assert (_pixels(tmp_path / "la.png") == 100).all()
    b = _pixels(tmp_path / "bits.png")
    assert (b[:, :20] == 255).all() and (b[:, 20:] == 0).all()
    assert (_pixels(tmp_path / "grey.png") == 77).all()
    f = _pixels(tmp_path / "float.tif")
    assert f[0, 0, 0] == 0 and f[-1, -1, 0] == 255 and abs(f.mean() - 127.5) < 1  # not clipped to 0 and 1
    assert (_pixels(tmp_path / "half.tif") == 128).all()

    pre = Preprocess(32, train=False)
    mean, std = np.array(MEAN).reshape(3, 1, 1), np.array(STD).reshape(3, 1, 1)
    expect = {"ramp16.png": 127.5, "white16.png": 255, "black16.png": 0, "la.png": 100, "grey.png": 77,
              "half.tif": 128, "float.tif": 127.5}
    for name in ["cmyk.jpg", "palette.png", "palette_alpha.png", "rgba.png", "bits.png", *expect]:
        x = pre.load(str(tmp_path / name), None)
        assert x.shape == (3, 32, 32) and x.dtype == np.float32 and np.isfinite(x).all(), name
        if name in expect:
            # (the centre crop leaves out part of a ramp, so its mean moves a little)
            assert abs(float((x * std + mean).mean()) * 255 - expect[name]) < 8, name


def _cut(path: Path, fraction: float) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * fraction)])
    return path


def test_truncated_jpeg_and_png_are_found_by_their_header_check(tmp_path):
    from PIL import Image

    from harness.data.folders import header_error

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # hardly compressible
    for name, kw in (("a.jpg", {}), ("a.png", {}), ("p.jpg", {"progressive": True}), ("z.jpg", {})):
        Image.fromarray(noise).save(tmp_path / name, **kw)
        assert header_error(str(tmp_path / name)) is None, name
    with open(tmp_path / "z.jpg", "ab") as f:
        f.write(b"\0" * 1000)  # padding after the end marker: a whole image still
    assert header_error(str(tmp_path / "z.jpg")) is None
    assert header_error(str(_cut(tmp_path / "a.jpg", 2 / 3))) == "truncated JPEG (its data stops before the end marker)"
    assert header_error(str(_cut(tmp_path / "a.png", 2 / 3))) == "truncated PNG (its data stops before the end marker)"
    assert header_error(str(_cut(tmp_path / "p.jpg", 2 / 3))).startswith("truncated JPEG")
    (tmp_path / "text.jpg").write_text("not an image")
    assert "cannot identify image file" in header_error(str(tmp_path / "text.jpg"))


@pytest.fixture
def fresh_scans(monkeypatch):
    """Empty per-process scan state of :mod:`harness.data.splits` for one test."""
    import harness.data.splits

    monkeypatch.setattr(harness.data.splits, "_SCANS", {})
    monkeypatch.setattr(harness.data.splits, "_SUMMARY", {})
    monkeypatch.setattr(harness.data.splits, "_DECODE_BAD", {})
    return harness.data.splits


def test_images_that_fail_only_while_decoding_are_replaced_counted_and_limited(tmp_path, fresh_scans, capfd):
    """A BMP cut in half passes the header check but fails to decode: the loader takes the next sample in its place
    (training with its label, evaluation with PAD_LABEL so it is not scored), names the file, and past
    max_bad_images the case fails in one line."""
    from harness.config import Settings
    from harness.data.images import Preprocess
    from harness.errors import HarnessError

    data = fresh_scans
    root = _images(tmp_path / "data", {"train": ["a", "b"]}, n=3, ext="bmp")  # 6 images
    bad = [_cut(root / "train" / "a" / "1.bmp", 0.5), _cut(root / "train" / "b" / "0.bmp", 0.5)]
    settings = Settings(data="folder", data_root=str(root), max_bad_images=0.2)  # at most 1.2 of 6
    _, samples, unreadable = data.scan_split(settings, "train")
    assert unreadable == [] and len(samples) == 6  # the header check cannot see it
    pre = Preprocess(32, train=False)
    i = [p for p, _ in samples].index(str(bad[0]))
    image, label, why = data.load_or_next(pre, samples, i, None)
    assert np.array_equal(image, pre.load(samples[i + 1][0], None)) and label == samples[i + 1][1] == 0
    assert why.startswith(f"{bad[0]}: cannot decode image: ") and "\n" not in why
    image, label, why_scored = data.load_or_next(pre, samples, i, None, scored=True)
    assert label == data.PAD_LABEL and why_scored == why
    assert data.load_or_next(pre, samples, 0, None)[1:] == (0, "")  # a readable one: nothing named

    data.note_unreadable(settings, "train", [why, why, ""])  # 1 of 6: under the limit; named once
    err = capfd.readouterr().err
    assert err.count(f"harness: warning: {bad[0]}: cannot be decoded (") == 1
    assert data.unreadable_files("train") == {str(bad[0])}
    summary = data.scan_summary()["train"]
    assert summary["skipped"] == 1 and summary["files"] == 5 and str(bad[0]) in summary["examples"][0]
    j = [p for p, _ in samples].index(str(bad[1]))
    with pytest.raises(HarnessError) as exc:
        data.note_unreadable(settings, "train", [data.load_or_next(pre, samples, j, None)[2]])
    message = str(exc.value)
    assert "\n" not in message and message.startswith(
        f"data_root '{root}': 2 of 6 image files in '{root}/train' cannot be decoded (more than max_bad_images: 0.2); "
        f"first found while loading: {bad[0]}: ")
    with pytest.raises(HarnessError, match=r"^3 images in a row cannot be decoded \(first: "):
        data.load_or_next(pre, [(str(bad[0]), 0), (str(bad[1]), 1), (str(bad[0]), 0)], 0, None)


_BMP_SUITE = """name: bmp
models: [gluon_resnet50_v1b]
backends: [{backend}]
devices: [cpu]
settings: {{batch_size: 2, epochs: 2, warmup: 1, width: 0.25, image_size: 32, num_classes: 3, data: folder,
           data_root: {root}, workers: 1, threads: 1, max_bad_images: {limit}, timeout: 600}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", params_with("train"))
def test_truncated_images_found_while_training_end_to_end(tmp_path, backend):
    """A train and a val BMP cut in half (their headers are fine): under max_bad_images the case trains on the
    other 11 train images, evaluates 11 val images and records the skipped files; with max_bad_images 0 it fails in
    one line naming the file, without a traceback."""
    root = _images(tmp_path / "data", {"train": list("abc"), "val": list("abc")}, n=4, ext="bmp")
    bad_train = _cut(root / "train" / "a" / "1.bmp", 0.5)
    bad_val = _cut(root / "val" / "a" / "1.bmp", 0.5)
    for limit in ("0.2", "0"):
        path = suite(tmp_path, _BMP_SUITE.format(backend=backend, root=root, limit=limit))
        out = harness("run", str(path), "--results", str(tmp_path / "r"), "--run-id", f"m{limit}", "--quiet",
                      "--no-report", timeout=900)
        assert "Traceback" not in out.stdout + out.stderr, out.stderr
        (record,) = [json.loads(line) for line in
                     (tmp_path / "r" / "bmp" / f"m{limit}" / "results.jsonl").read_text().splitlines()]
        if limit == "0.2":
            assert out.returncode == 0 and record["status"] == "ok", (out.stderr, record.get("reason"))
            train, val = record["metrics"]["data"]["train"], record["metrics"]["data"]["val"]
            assert train["skipped"] == 1 and str(bad_train) in train["examples"][0], train
            assert val["skipped"] == 1 and str(bad_val) in val["examples"][0], val
            assert record["metrics"]["eval"]["images"] == 11
            assert train["files"] == 11 and val["files"] == 11
            assert "warning: 1 unreadable image files skipped in train (metrics.data.train.examples)" in out.stderr
            log = (tmp_path / "r" / "bmp" / f"m{limit}" / "cases" / f"gluon_resnet50_v1b-{backend}-cpu" / "case.log"
                   ).read_text()
            for bad in (bad_train, bad_val):  # named once, though training read it in each of 2 epochs
                assert log.count(f"harness: warning: {bad}: cannot be decoded (") == 1, log
        else:
            assert out.returncode == 1 and record["status"] == "failed", out.stderr
            reason = record["reason"]
            assert "\n" not in reason and "cannot be decoded" in reason and str(bad_train) in reason, reason
            assert "more than max_bad_images: 0.0" in reason
            # (MindSpore's own NumPy-ABI notice at setup prints a traceback into the case log; none follows the image)
            log = record["log_tail"]
            assert "Traceback" not in log[log.index(f"harness: warning: {bad_train}: cannot be decoded"):], log
            assert log.rstrip().endswith(f"failed: {reason}"), log[-500:]


def test_symlink_loops_are_one_line_or_counted_as_unreadable(tmp_path, fake_backend, fresh_scans):
    """A class folder that is a symlink to itself stops the suite in one line naming it; a file symlink loop among
    the images is an unreadable image, counted against max_bad_images."""
    from harness.config import Settings
    from harness.data.folders import scan_folder
    from harness.errors import HarnessError

    data = fresh_scans
    root = _images(tmp_path / "data", {"train": ["a", "b"], "val": ["a", "b"]})
    loop = root / "train" / "loopdir"
    os.symlink("loopdir", loop)
    with pytest.raises(HarnessError) as exc:
        scan_folder(str(root), "train")
    assert str(exc.value) == f"data_root '{root}': cannot read '{loop}': Too many levels of symbolic links"
    path = suite(tmp_path, FAKE.replace("eval: false", f"eval: true, data: folder, data_root: {root}"))
    line = error_line(harness("run", str(path), "--results", str(tmp_path / "r")))
    assert line.startswith("harness: error: ") and line.endswith(
        f"data_root '{root}': cannot read '{loop}': Too many levels of symbolic links"), line
    loop.unlink()

    os.symlink("loop.jpg", root / "train" / "a" / "loop.jpg")
    classes, samples, bad = data.scan_split(Settings(data="folder", data_root=str(root), max_bad_images=0.5), "train")
    assert classes == ["a", "b"] and len(samples) == 5
    assert [samples[i][0] for i in bad] == [str(root / "train" / "a" / "loop.jpg")]
    assert data.scan_summary()["train"]["skipped"] == 1
    data._SCANS.clear()  # a second read with a stricter limit: refused in one line
    with pytest.raises(HarnessError) as exc:
        data.scan_split(Settings(data="folder", data_root=str(root), max_bad_images=0), "train")
    assert "\n" not in str(exc.value) and f"first: {root}/train/a/loop.jpg: " in str(exc.value)
    assert "Too many levels of symbolic links" in str(exc.value)


def test_non_finite_weights_are_refused_naming_the_tensor():
    from harness.errors import HarnessError
    from harness.models.weights import check_finite

    with pytest.raises(HarnessError) as exc:
        check_finite({"ok": np.ones(3), "w": np.array([1.0, np.nan])}, "weights 'x.npz'")
    assert str(exc.value) == ("weights 'x.npz': tensor 'w' (2,) has 1 of 2 values NaN or infinite (a diverged or "
                              "corrupted checkpoint)")
    with pytest.raises(HarnessError, match=r"tensor 'b' \(2, 2\) has 2 of 4 values NaN or infinite"):
        check_finite({"b": np.array([[np.inf, 0], [-np.inf, 1]], np.float16)}, "w")
    check_finite({"counter": np.array([2**62, -1], np.int64), "n": np.array(3), "empty": np.zeros(0),
                  "names": np.array(["a", "b"]), "flags": np.array([True, False]),
                  "f": np.ones((2, 2), np.float32)}, "w")  # only float tensors are checked; finite ones pass


# --- result files and run descriptions -------------------------------------------------------------------------

def _result_record(case: str = "c") -> dict:
    return {"schema": "harness.result/1", "kind": "measured", "run_id": "r", "case": case, "status": "ok",
            "reason": None, "config": {"model": "gluon_resnet50_v1b", "backend": "fake", "device": "cpu",
                                       "settings": {"batch_size": 2, "data": "synthetic"}, "variant": {}},
            "metrics": {"train": {"images_per_s": 100.0}}, "env": {}}


def _hostile_result_files(tmp_path: Path) -> dict[Path, str]:
    """Result files harness cannot read, each with the start of what it says after the file name."""
    files = {"empty.jsonl": (b"", ": no records (the file is empty)"),
             "other.jsonl": (b'{"name": "pytest", "passed": 3}\n',
                             ': no harness records (line 1 is JSON of another tool: no "schema": "harness.result/1")'),
             "nocase.jsonl": (b'{"schema": "harness.result/1", "status": "ok"}\n',
                              ":1: a harness record without a valid 'case' (expected str, got NoneType)"),
             "latin1.jsonl": (json.dumps({**_result_record(), "case": "caf\xe9"}, ensure_ascii=False)
                              .encode("latin-1") + b"\n", ":1: not UTF-8 text (byte 0xe9"),
             "utf16.jsonl": ((json.dumps(_result_record()) + "\n").encode("utf-16"), ": the file is UTF-16 text"),
             "binary.jsonl": (bytes(range(256)) * 4, ":1: a binary file (a NUL byte), not UTF-8 text")}
    for name, (raw, _) in files.items():
        (tmp_path / name).write_bytes(raw)
    return {tmp_path / name: message for name, (_, message) in files.items()}


def test_hostile_result_files_are_one_line_exit_2(tmp_path):
    for f, message in _hostile_result_files(tmp_path).items():
        line = error_line(harness("report", str(f)))
        assert line.startswith(f"harness: error: {f}{message}"), line

    torn = tmp_path / "torn.jsonl"
    torn.write_text(json.dumps(_result_record()) + "\n" + json.dumps(_result_record("d")) + "\n"
                    + '{"schema": "harness.result/1", "case": "e", "sta')
    out = harness("report", str(torn))
    assert out.returncode == 0 and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.stderr.strip() == f"harness: warning: {torn}:3: torn or invalid record skipped"
    assert "gluon_resnet50_v1b" in out.stdout


def test_compare_refuses_hostile_result_files_on_either_side(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(_result_record()) + "\n")
    for i, (f, message) in enumerate(_hostile_result_files(tmp_path).items()):
        args = ("compare", str(f), str(good)) if i % 2 else ("compare", str(good), str(f))
        line = error_line(harness(*args))
        assert line.startswith(f"harness: error: {f}{message}"), (args, line)


def test_resume_of_a_folder_whose_run_json_is_not_a_run(tmp_path, fake_backend):
    path = suite(tmp_path, FAKE)
    run = tmp_path / "old"
    run.mkdir()
    for raw, message in ((b"[1, 2]", (f"--resume {run}: {run}/run.json is not a run's description (expected an "
                                      "object with 'suite' and a list of 'cases')")),
                         ('{"suite": "bi", "cases": []}'.encode("utf-16"),
                          f"{run}/run.json: the file is UTF-16 text; save it as UTF-8"),
                         (b'{"suite": "bi", "cases": [', f"--resume {run}: {run}/run.json: not valid JSON ("),
                         (b'{"suite": "other", "cases": []}',
                          f"--resume {run}: that run is of suite 'other', not 'bi'")):
        (run / "run.json").write_bytes(raw)
        line = error_line(harness("run", str(path), "--resume", str(run), "--results", str(tmp_path / "r")))
        assert line.startswith(f"harness: error: {message}"), line
    assert sorted(os.listdir(run)) == ["run.json"]


def test_one_line_bounds_a_huge_message():
    from harness.errors import one_line

    message = "START " + "\n".join(f"line {i} of a hostile file" for i in range(2500)) + " END"
    assert len(message) > 50_000
    line = one_line(message)
    assert "\n" not in line and len(line) <= 1100
    assert line.startswith("START line 0 of a hostile file line 1") and line.endswith("line 2499 of a hostile file END")
    assert "characters left out" in line
    assert one_line("short\nmessage") == "short message"
