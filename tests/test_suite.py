"""Suite loading: product of axes, overrides, --set, ${ENV}, and one-line errors."""
from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.run.suite import load_suite, parse_set

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]

BASE = """
name: t
models: [gluon_resnet50_v1b]
backends: [torch]
devices: [cpu, gpu]
settings: {batch_size: 8, steps: 3}
"""


def load(tmp_path, text, **kw):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return load_suite(p, **kw)


def error(tmp_path, text, **kw) -> str:
    with pytest.raises(HarnessError) as info:
        load(tmp_path, text, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / "s.yaml") in msg or "--set" in msg
    return msg


def test_product_matrix_overrides_exclude(tmp_path):
    suite = load(tmp_path, BASE + """
matrix: {data: [synthetic, tiny], precision: [fp32, bf16]}
overrides:
  - match: {data: tiny}
    settings: {steps: 9}
  - match: {device: gpu, precision: bf16}
    settings: {channels_last: true}
exclude:
  - {device: gpu, data: tiny}
""")
    assert len(suite.cases) == 2 * 2 * 2 - 2
    by = {c.name: c for c in suite.cases}
    tiny = by["gluon_resnet50_v1b-torch-cpu-data=tiny-precision=fp32"]
    assert tiny.settings.steps == 9 and tiny.settings.batch_size == 8 and tiny.settings.data == "tiny"
    assert by["gluon_resnet50_v1b-torch-gpu-data=synthetic-precision=bf16"].settings.channels_last is True
    assert by["gluon_resnet50_v1b-torch-cpu-data=synthetic-precision=bf16"].settings.channels_last is False
    assert not any(c.device == "gpu" and c.settings.data == "tiny" for c in suite.cases)
    assert suite.name == "t"


def test_set_applies_last_and_is_typed(tmp_path):
    suite = load(tmp_path, BASE, overrides=parse_set(["batch_size=4", "nesterov=true", "lr=0.5"]))
    s = suite.cases[0].settings
    assert (s.batch_size, s.nesterov, s.lr) == (4, True, 0.5)


@pytest.mark.parametrize("item, expect", [
    ("batchsize=4", "unknown setting; did you mean 'batch_size'?"),
    ("batch_size=four", "expected integer"),
    ("novalue", "expected key=value"),
])
def test_set_errors(item, expect):
    with pytest.raises(HarnessError, match=expect):
        parse_set([item])


def test_env_expansion(tmp_path, monkeypatch):
    data = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (data / split / c).mkdir(parents=True)
    monkeypatch.setenv("IMAGENET_ROOT", str(data))
    suite = load(tmp_path,
                 BASE + "matrix: {data: [folder]}\noverrides:\n  - settings: {data_root: '${IMAGENET_ROOT}'}\n")
    assert suite.cases[0].settings.data_root == str(data)
    monkeypatch.delenv("IMAGENET_ROOT")
    msg = error(tmp_path,
                BASE + "matrix: {data: [folder]}\noverrides:\n  - settings: {data_root: '${IMAGENET_ROOT}'}\n")
    assert "environment variable IMAGENET_ROOT is not set" in msg
    suite = load(tmp_path, BASE + "overrides:\n  - settings: {data_root: '${IMAGENET_ROOT:-/x}'}\n")
    assert suite.cases[0].settings.data_root == "/x"


@pytest.mark.parametrize("text, expect", [
    (BASE.replace("batch_size", "batchsize"), "settings.batchsize: unknown setting; did you mean 'batch_size'?"),
    (BASE.replace("steps: 3", "steps: three"), "settings.steps: expected integer or null, got str 'three'"),
    (BASE.replace("steps: 3", "steps: true"), "settings.steps: expected integer or null"),
    (BASE.replace("batch_size: 8", "batch_size: 0"), "settings.batch_size: 0 is below the minimum 1"),
    (BASE + "matrix: {precision: [fp64]}\n", "matrix.precision: 'fp64' is not one of fp32, bf16, fp16"),
    (BASE.replace("gluon_resnet50_v1b", "gluon_resnet50_v1"),
     "models[0]: unknown model 'gluon_resnet50_v1'; did you mean 'gluon_resnet50_v1b'?"),
    (BASE.replace("[torch]", "[torhc]"), "backends[0]: unknown backend 'torhc'; did you mean 'torch'?"),
    (BASE.replace("[cpu, gpu]", "[cpu, gpux]"), "devices[1]: unknown device 'gpux'; did you mean 'gpu'?"),
    (BASE.replace("models:", "modles:"), "modles: unknown key; did you mean 'models'?"),
    (BASE + "overrides:\n  - match: {devcie: cpu}\n    settings: {}\n",
     "overrides[0].match.devcie: unknown key; did you mean 'device'?"),
    (BASE + "exclude:\n  - {device: cpu}\n  - {device: gpu}\n", "the suite has no cases"),
    (BASE.replace("devices: [cpu, gpu]", "devices: []"), "the suite has no cases"),
    ("", "the suite is empty"),
    ("models: [a\nbackends: x", "malformed YAML"),
    ("- a\n- b\n", "expected a mapping"),
    (BASE + "matrix: {data: [folder]}\noverrides:\n  - settings: {data_root: /no/such/dir}\n",
     "data_root '/no/such/dir': no such folder"),
    (BASE + "matrix: {data: [folder]}\n", "data_root: required when data is 'folder'"),
])
def test_one_line_errors(tmp_path, text, expect):
    assert expect in error(tmp_path, text)


def test_missing_split_folder(tmp_path):
    (tmp_path / "d" / "train").mkdir(parents=True)
    msg = error(tmp_path,
                BASE + f"matrix: {{data: [folder]}}\noverrides:\n  - settings: {{data_root: {tmp_path / 'd'}}}\n")
    assert "no 'val' folder" in msg


def test_more_classes_than_num_classes_is_refused_at_load(tmp_path):
    # The one check (the data streams no longer repeat it when a case runs): a folder of 4 classes, and the tiny
    # dataset `harness run` makes (harness.data.tiny.TINY_CLASSES), against num_classes.
    from harness.data.tiny import TINY_CLASSES

    root = tmp_path / "d"
    for split in ("train", "val"):
        for c in "abcd":
            (root / split / c).mkdir(parents=True)
    folder = BASE + f"matrix: {{data: [folder]}}\noverrides:\n  - settings: {{data_root: {root}}}\n"
    msg = error(tmp_path, folder.replace("steps: 3}", "steps: 3, num_classes: 3}"), check_backends=False)
    assert f"data_root '{root}': num_classes: 3, but the data has 4 classes" in msg and "num_classes: 4)" in msg
    assert load(tmp_path, folder.replace("steps: 3}", "steps: 3, num_classes: 4}"), check_backends=False).cases
    tiny = BASE.replace("steps: 3}", f"steps: 3, data: tiny, num_classes: {TINY_CLASSES - 1}}}")
    assert f"data 'tiny': num_classes: {TINY_CLASSES - 1}, but the data has {TINY_CLASSES} classes" in error(
        tmp_path, tiny, check_backends=False)
    assert load(tmp_path, tiny.replace(f"num_classes: {TINY_CLASSES - 1}", f"num_classes: {TINY_CLASSES}"),
                check_backends=False).cases


def test_missing_file():
    with pytest.raises(HarnessError, match=r"nope.yaml: no such suite file"):
        load_suite("nope.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    # A python tag would run code with an unsafe loader; here it is a YAML error.
    msg = error(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    assert "malformed YAML" in msg


def test_case_names_are_safe_paths():
    from harness.config import case_slug
    assert case_slug("../../etc/passwd") == "etc_passwd"
    assert "/" not in case_slug("a/b") and case_slug("..") == "case"


def test_shipped_suites_load(tmp_path, monkeypatch):
    from pathlib import Path
    for split in ("train", "val"):  # the ImageNet suites need a dataset root from the environment
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
    monkeypatch.setenv("IMAGENET_ROOT", str(tmp_path))
    for path in sorted((Path(__file__).parent.parent / "suites").glob("*.yaml")):
        assert load_suite(path).cases


def test_only_selects_cases_by_glob_and_refuses_a_pattern_matching_nothing():
    from harness.run.suite import select_cases

    suite = load_suite(REPO / "suites" / "ci_small.yaml")
    picked = select_cases(suite, ["multigrain*", "*bam-torch*"])
    assert {c.name for c in picked.cases} == {"multigrain_resnet50-torch-cpu", "multigrain_resnet50-mindspore-cpu",
                                              "resnet50_bam-torch-cpu"}
    with pytest.raises(HarnessError, match=r"ci_small.yaml: --only nothing: no case matches") as info:
        select_cases(suite, ["nothing"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, devices", [("imagenet_8p", 8), ("imagenet_1p", 1)])
def test_imagenet_suites_use_published_recipes_on_the_seeds_devices(name, devices, tmp_path, monkeypatch):
    from harness.models.specs import MODELS

    monkeypatch.delenv("IMAGENET_ROOT", raising=False)
    with pytest.raises(HarnessError, match="environment variable IMAGENET_ROOT is not set"):
        load_suite(REPO / "suites" / f"{name}.yaml")
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
    monkeypatch.setenv("IMAGENET_ROOT", str(tmp_path))
    cases = load_suite(REPO / "suites" / f"{name}.yaml").cases
    assert {(c.model, c.backend, c.device) for c in cases} == {
        (m, b, d) for m in MODELS for b in ("mindspore", "torch") for d in ("ascend", "gpu")}
    for c in cases:
        s = c.settings
        assert s.recipe and s.devices == devices and s.data_root == str(tmp_path) and s.image_size == 224
    mg = {c.backend: c.settings for c in cases if c.model == "multigrain_resnet50"}
    assert mg["mindspore"].optimizer == "thor" and mg["torch"].optimizer == "sgd"
    bam = next(c.settings for c in cases if c.model == "resnet50_bam")
    assert bam.lr == (0.18 if devices == 8 else 0.02)


INCLUDE = """
name: t
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 8, steps: 3}
matrix: {seed: [0, 1]}
include:
  - {models: [gluon_resnet50_v1b], backends: [fake], devices: [cpu],
     settings: {scenario: data, data: tiny, data_workers: [1, 2]}}
  - {models: gluon_resnet50_v1b, backends: fake, devices: cpu, settings: {seed: 5}}
overrides:
  - match: {scenario: data}
    settings: {steps: 7}
"""


def test_include_adds_cases_beside_the_product(tmp_path, fake_backend):
    suite = load(tmp_path, INCLUDE)
    by = {c.name: c for c in suite.cases}
    assert list(by) == ["gluon_resnet50_v1b-fake-cpu-seed=0", "gluon_resnet50_v1b-fake-cpu-seed=1",
                        "gluon_resnet50_v1b-fake-cpu-scenario=data-data=tiny", "gluon_resnet50_v1b-fake-cpu-seed=5"]
    data = by["gluon_resnet50_v1b-fake-cpu-scenario=data-data=tiny"]
    s = data.settings
    assert (s.scenario, s.data, tuple(s.data_workers)) == ("data", "tiny", (1, 2))  # a list: applied, not in the name
    assert s.steps == 7 and s.batch_size == 8  # the suite's settings, then the overrides that match it
    assert data.variant == {"scenario": "data", "data": "tiny"}
    assert by["gluon_resnet50_v1b-fake-cpu-seed=0"].settings.steps == 3
    assert by["gluon_resnet50_v1b-fake-cpu-seed=5"].settings.seed == 5
    assert {c.settings.steps for c in load(tmp_path, INCLUDE, overrides=parse_set(["steps=9"])).cases} == {9}

    msg = error(tmp_path, INCLUDE.replace("- {models: [gluon", "- {model: [gluon"))
    assert "include[0].model: unknown key; did you mean 'models'?" in msg
    msg = error(tmp_path, INCLUDE.replace("backends: fake", "backends: fak"))
    assert "include[1].backends[0]: unknown backend 'fak'; did you mean 'fake'?" in msg
    msg = error(tmp_path, INCLUDE.replace(", devices: cpu, settings: {seed: 5}", ", settings: {seed: 5}"))
    assert "include[1]: needs models, backends and devices" in msg
    msg = error(tmp_path, INCLUDE.replace("data_workers: [1, 2]", "data_wokers: [1, 2]"))
    assert "include[0].settings.data_wokers: unknown setting; did you mean 'data_workers'?" in msg
    msg = error(tmp_path, INCLUDE.replace("settings: {seed: 5}", "settings: {seed: 0}"))
    assert "two cases have the same name" in msg
