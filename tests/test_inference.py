"""The inference scenario: latency percentiles, throughput per batch size and exported-model accuracy, in every
runtime of both frameworks and in ONNX Runtime (a separately packaged backend fed by another backend's export)."""
from __future__ import annotations

import pytest
from backends import params_where
from conftest import have, needs_mindspore

from harness.backends.hook_checks import supports_of
from harness.errors import HarnessError
from harness.results.records import read_records
from harness.results.references import reference_records
from harness.results.report import render_markdown
from harness.run.runner import run_suite
from harness.run.suite import load_suite

needs_ort = pytest.mark.skipif(not have("harness_onnxruntime"),
                               reason="the onnxruntime backend is not installed (pip install -e plugins/onnxruntime)")

SUITE = """
models: [resnet50_bam]
backends: [{backends}]
devices: [cpu]
settings: {{scenario: inference, width: 0.25, image_size: 32, batch_size: 20, num_classes: 10, data: tiny,
           inference_batch_sizes: [1, 4], latency_min_runs: 6, latency_min_s: 0.0, warmup: 2, threads: 2,
           workers: 0}}
matrix: {{runtime: [{runtimes}]}}
{extra}
"""


def _run(tmp_path, backends, runtimes, extra="", name="s"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(backends=backends, runtimes=runtimes, extra=extra))
    run_dir = run_suite(load_suite(path), tmp_path / "results", run_id=name, quiet=True)
    return {r["config"]["settings"].get("runtime"): r for r in read_records(run_dir / "results.jsonl")}


def _check_measured(rec, exported: bool):
    assert rec["status"] == "ok", (rec["reason"], rec.get("log_tail"))
    inf = rec["metrics"]["inference"]
    lat = inf["latency_ms"]
    assert lat["count"] >= 6 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert [t["batch_size"] for t in inf["throughput"]] == [1, 4]
    assert all(t["images_per_s"] > 0 and t["ms_per_batch"]["count"] >= 6 for t in inf["throughput"])
    assert all((t["energy"]["joules"] is None) == bool(t["energy"]["reason"]) for t in inf["throughput"])
    assert inf["images_per_s"] == inf["throughput"][-1]["images_per_s"]
    assert len(rec["samples"]["inference_b1_s"]) == lat["count"]
    acc = inf["accuracy"]
    assert acc["images"] == 100 and 0 <= acc["top1"] <= acc["top5"] <= 100
    if exported:  # one static-shape export per batch size: those measured and the accuracy pass's
        assert sorted(e["batch"] for e in rec["metrics"]["export"]) == [1, 4, 20]
    return inf


@pytest.mark.slow
def test_torch_runtimes_measure_latency_throughput_and_exported_accuracy(tmp_path):
    recs = _run(tmp_path, "torch", "eager, torchscript")
    for runtime, rec in recs.items():
        inf = _check_measured(rec, exported=runtime == "torchscript")
        acc = inf["accuracy"]
        # the same weights and the same pixels (harness's and torch's loaders share harness.data.folders)
        assert acc["top1_agreement"] == 100.0 and acc["max_abs_logit_diff"] < 1e-4
        assert acc["top1"] == pytest.approx(acc["framework_top1"]) == pytest.approx(rec["metrics"]["eval"]["top1"])
    assert recs["torchscript"]["metrics"]["inference"]["runtime_detail"].startswith("TorchScript")
    text = render_markdown([*recs.values(), *reference_records()])
    assert "## Inference" in text and "p99 ms" in text
    # the published Ascend 310 latency sits beside the measured one in resnet50_bam's seed-layout table
    assert "inference latency (ms)" in text and "— · pub 4.83" in text and "— · pub 751.0" in text


@needs_mindspore
@pytest.mark.slow
def test_mindspore_runtimes_and_the_ascend_310_path(tmp_path):
    recs = _run(tmp_path, "mindspore", "graph, mindir, lite")
    for runtime in ("graph", "mindir"):
        inf = _check_measured(recs[runtime], exported=runtime == "mindir")
        assert inf["accuracy"]["top1_agreement"] == 100.0 and inf["accuracy"]["max_abs_logit_diff"] < 1e-4
    assert "GraphCell" in recs["mindir"]["metrics"]["inference"]["runtime_detail"]
    lite = recs["lite"]
    assert lite["status"] == "skipped" and "MindSpore Lite" in lite["reason"], lite["reason"]


@needs_ort
@pytest.mark.slow
@pytest.mark.parametrize("source", params_where(lambda info: "onnx" in supports_of(info)["export"]))
def test_onnxruntime_runs_the_export_another_backend_made(tmp_path, source):
    recs = _run_ort(tmp_path, source)
    rec = recs["onnxruntime"]
    inf = _check_measured(rec, exported=False)
    made = rec["metrics"]["export_from"]
    assert made["backend"] == source and sorted(e["batch"] for e in made["export"]) == [1, 4, 20]
    assert inf["accuracy"]["framework_top1"] == made["eval"]["top1"]
    assert inf["runtime_detail"].startswith("onnxruntime") and "CPUExecutionProvider" in inf["runtime_detail"]
    assert rec["env"]["framework"] == "ONNX Runtime"


def _run_ort(tmp_path, source):
    path = tmp_path / "ort.yaml"
    path.write_text(SUITE.format(backends="onnxruntime", runtimes="onnxruntime", extra="")
                    .replace("workers: 0}", f"workers: 0, export_from: {source}}}"))
    run_dir = run_suite(load_suite(path), tmp_path / "results", run_id="ort", quiet=True)
    return {r["config"]["settings"].get("runtime"): r for r in read_records(run_dir / "results.jsonl")}


@needs_ort
def test_inference_input_errors_are_one_line(tmp_path):
    bad = tmp_path / "not_onnx.onnx"
    bad.write_text("not a model")
    path = tmp_path / "bad.yaml"
    path.write_text(f"""
models: [gluon_resnet50_v1b]
backends: [torch, onnxruntime]
devices: [cpu]
settings: {{scenario: inference, width: 0.25, image_size: 32, num_classes: 10, latency_min_runs: 2,
           latency_min_s: 0.0, warmup: 1, runtime: tensorrt}}
overrides:
  - match: {{backend: onnxruntime}}
    settings: {{runtime: onnxruntime}}
matrix: {{model_file: ['/nonexistent/model_b{{batch}}.onnx', '{bad}']}}
exclude:
  - {{backend: torch, model_file: '{bad}'}}
""")
    # what is known before anything runs is refused at load, one line naming the case
    with pytest.raises(HarnessError, match=r"case gluon_resnet50_v1b-torch-cpu-model_file=/nonexistent/model_b\{batch\}"
                                           r"\.onnx: runtime 'tensorrt': backend 'torch' has eager, torchscript, pt2"):
        load_suite(path)
    path.write_text(path.read_text().replace("runtime: tensorrt", "runtime: eager"))
    with pytest.raises(HarnessError, match=r"onnxruntime-cpu-model_file=/nonexistent/model_b\{batch\}\.onnx: "
                                           r"model_file '/nonexistent/model_b1\.onnx': no such file"):
        load_suite(path)
    # a file that exists but does not load fails its case in one line, and the suite goes on
    path.write_text(path.read_text().replace("'/nonexistent/model_b{batch}.onnx', ", ""))
    run_dir = run_suite(load_suite(path), tmp_path / "results", run_id="bad", quiet=True)
    reasons = {r["case"].split("-")[1]: r["reason"] for r in read_records(run_dir / "results.jsonl")}
    assert reasons["onnxruntime"].startswith(f"inference: model_file '{bad}': onnxruntime cannot load it"), reasons
    assert list(reasons) == ["onnxruntime"] and "\n" not in reasons["onnxruntime"]


def test_default_runtime_batch_file_and_one_device_are_each_decided_once(tmp_path):
    # Each rule has one home: the default runtime (harness.backends.hook_checks.inference_runtime), the file of
    # a model_file template for a batch (model_file_for), and one device (Scenario.multi_device, enforced by
    # harness.run.scenarios.check_settings for every scenario, not again by the inference scenario).
    from harness.backends.hook_checks import batch_template, export_format_for, inference_runtime, model_file_for
    from harness.config import Case, Settings
    from harness.run.scenarios import check_settings, get_scenario
    from harness.run.scenarios.base import Scenario

    info = {"runtimes": {"own": None, "ort": "onnx"}, "scenarios": ["inference"]}
    assert (inference_runtime(info, None), inference_runtime(info, "ort"), inference_runtime({}, None)) == (
        "own", "ort", None)
    assert (export_format_for(info, None), export_format_for(info, "ort")) == (None, "onnx")
    template = batch_template(str(tmp_path / "model_onnx_b4.onnx"), 4)
    assert template == str(tmp_path / "model_onnx_b{batch}.onnx")
    assert model_file_for(template, 16) == str(tmp_path / "model_onnx_b16.onnx")
    # the load-time check takes the same default runtime and substitutes {batch} the same way
    inference = get_scenario("inference")
    first_loads_onnx = {"runtimes": {"ort": "onnx", "own": None}, "scenarios": ["inference"]}
    case = Case(name="c", model="gluon_resnet50_v1b", backend="b", device="cpu",
                settings=Settings(scenario="inference", model_file=template, inference_batch_sizes=(2,)))
    with pytest.raises(HarnessError, match=r"model_file '.*model_onnx_b2\.onnx': no such file"):
        inference.check_backend(case, first_loads_onnx, lambda name: {})
    inference.check_backend(case, info, lambda name: {})  # its first runtime runs the built model: no file
    assert not inference.multi_device and type(inference).check is Scenario.check
    with pytest.raises(HarnessError, match=r"^scenario inference runs on one device \(devices: 1\)$"):
        check_settings(Settings(scenario="inference", devices=2))
