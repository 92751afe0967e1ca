"""Where the time goes (``profile: true``, :mod:`harness.measure.profiles`): the categorisation rules on op names both
frameworks' profilers really gave, the record and its checks, the report's side-by-side table, the fake backend's
path through ``harness run``, and (slow) both real profilers on gluon_resnet50_v1b at reduced size."""
from __future__ import annotations

import json
import os

import pytest
from conftest import have

from harness.errors import HarnessError, Unsupported
from harness.measure.op_categories import CATEGORIES, TOLERANCE, categorise, summarise
from harness.measure.profiles import check_profile
from harness.results.profile_report import profile_section
from harness.results.records import read_records
from harness.results.report import render_markdown
from harness.run.runner import run_suite
from harness.run.suite import load_suite

# --- the rules, on real names --------------------------------------------------------------------------------------

#: (name, scope, category) as torch.profiler 2.13 gave them for a gluon_resnet50_v1b training step on CPU (scope:
#: the parent ops, outermost first, as harness_torch.profile builds it).
TORCH_OPS = [
    ("aten::mkldnn_convolution", "aten::conv2d/aten::convolution/aten::_convolution", "convolution"),
    ("aten::convolution_backward", "autograd::engine::evaluate_function: ConvolutionBackward0/ConvolutionBackward0",
     "convolution"),
    ("aten::_slow_conv2d_backward", "autograd::engine::evaluate_function: ConvolutionBackward0", "convolution"),
    ("autograd::engine::evaluate_function: ConvolutionBackward0", "", "convolution"),
    ("aten::native_batch_norm", "aten::batch_norm/aten::_batch_norm_impl_index", "normalisation"),
    ("aten::native_batch_norm_backward", "autograd::engine::evaluate_function: NativeBatchNormBackward0",
     "normalisation"),
    ("aten::addmm", "aten::linear", "matmul"),
    ("aten::mm", "autograd::engine::evaluate_function: AddmmBackward0/AddmmBackward0", "matmul"),
    ("aten::relu_", "", "elementwise and activation"),
    ("aten::clamp_min_", "aten::relu_", "elementwise and activation"),
    ("aten::threshold_backward", "autograd::engine::evaluate_function: ReluBackward0/ReluBackward0",
     "elementwise and activation"),
    ("aten::add", "", "elementwise and activation"),  # the residual sum
    ("aten::max_pool2d_with_indices", "aten::max_pool2d", "pooling"),
    ("aten::max_pool2d_with_indices_backward",
     "autograd::engine::evaluate_function: MaxPool2DWithIndicesBackward0/MaxPool2DWithIndicesBackward0", "pooling"),
    ("aten::mean", "aten::adaptive_avg_pool2d", "pooling"),
    ("aten::_log_softmax", "aten::cross_entropy_loss/aten::log_softmax", "loss"),
    ("aten::nll_loss_forward", "aten::cross_entropy_loss/aten::nll_loss_nd/aten::nll_loss", "loss"),
    ("aten::_log_softmax_backward_data", "autograd::engine::evaluate_function: LogSoftmaxBackward0", "loss"),
    ("aten::nll_loss_backward", "autograd::engine::evaluate_function: NllLossBackward0/NllLossBackward0", "loss"),
    ("Optimizer.step#SGD.step", "", "optimizer update"),
    ("aten::add_", "Optimizer.step#SGD.step", "optimizer update"),  # the same op name as a gradient sum elsewhere
    ("aten::mul_", "Optimizer.step#SGD.step", "optimizer update"),
    ("aten::_foreach_mul_", "", "optimizer update"),
    ("Optimizer.zero_grad#SGD.zero_grad", "", "optimizer update"),
    ("aten::copy_", "autograd::engine::evaluate_function: ConvolutionBackward0", "data transfer"),
    ("aten::_to_copy", "aten::to", "data transfer"),
    ("aten::empty", "aten::conv2d", "host/other"),
    ("aten::as_strided_", "aten::conv2d", "host/other"),
    ("torch::autograd::AccumulateGrad", "autograd::engine::evaluate_function: torch::autograd::AccumulateGrad",
     "host/other"),
    ("detach", "", "host/other"),
]

#: (op type, full scope, category) as mindspore.profiler.profile 2.10 gave them (cpu_op_detail_info_0.csv) for
#: the same model and step on CPU, GRAPH mode.
MINDSPORE_OPS = [
    ("Conv2D", "Default/network-_WithLoss/net-ResNet/layer4-SequentialCell/2-Bottleneck/conv3-Conv2d", "convolution"),
    ("Conv2DBackpropInput", ("Gradients/Default/network-_WithLoss/net-ResNet/layer1-SequentialCell/0-Bottleneck/"
                             "conv1-Conv2d/Grad_Conv2D"), "convolution"),
    ("Conv2DBackpropFilter", "Gradients/Default/network-_WithLoss/net-ResNet/conv1-Conv2d/Grad_Conv2D", "convolution"),
    ("BatchNorm", ("Default/network-_WithLoss/net-ResNet/layer4-SequentialCell/0-Bottleneck/downsample-SequentialCell/"
                   "1-BatchNorm2d"), "normalisation"),
    ("BatchNormGrad", "Gradients/Default/network-_WithLoss/net-ResNet/bn1-BatchNorm2d/Grad_BatchNorm",
     "normalisation"),
    ("MatMul", "Gradients/Default/network-_WithLoss/net-ResNet/fc-Dense/Grad_MatMul", "matmul"),
    ("ReLU", "Default/network-_WithLoss/net-ResNet/layer4-SequentialCell/1-Bottleneck/relu-ReLU",
     "elementwise and activation"),
    ("ReluGrad", "Gradients/Default/network-_WithLoss/net-ResNet/relu-ReLU/Grad_ReLU", "elementwise and activation"),
    ("Add", "Default/network-_WithLoss/net-ResNet/layer1-SequentialCell/0-Bottleneck", "elementwise and activation"),
    ("AddN", "Gradients/Default/network-_WithLoss/net-ResNet/layer1-SequentialCell/0-Bottleneck/relu-ReLU",
     "elementwise and activation"),
    ("BiasAdd", "Default/network-_WithLoss/net-ResNet/fc-Dense", "elementwise and activation"),
    ("MaxPool", "Default/network-_WithLoss/net-ResNet/maxpool-MaxPool2d", "pooling"),
    ("MaxPoolGrad", "Gradients/Default/network-_WithLoss/net-ResNet/maxpool-MaxPool2d/Grad_MaxPool", "pooling"),
    ("ReduceMax", "Default/network-_WithLoss/loss-CrossEntropyLoss", "loss"),
    ("Exp", "Default/network-_WithLoss/loss-CrossEntropyLoss", "loss"),
    ("GatherDGradV2", "Gradients/Default/network-_WithLoss/loss-CrossEntropyLoss/Grad_GatherD", "loss"),
    ("Mul", "Gradients/Default/network-_WithLoss/loss-CrossEntropyLoss/Grad_Exp", "loss"),
    ("ApplyMomentum", "Default/optimizer-Momentum", "optimizer update"),
    ("AddN", "Default/optimizer-Momentum", "optimizer update"),  # weight decay: an AddN like the gradient sums
    ("Gather", "Default/optimizer-Momentum/learning_rate-_IteratorLearningRate", "optimizer update"),
    ("Pad", "Default/network-_WithLoss/net-ResNet/pad-Pad", "data transfer"),
    ("Slice", "Gradients/Default/network-_WithLoss/net-ResNet/pad-Pad/Grad_Pad", "data transfer"),
    ("Tile", "Gradients/Default/Grad_ReduceMean", "data transfer"),
]

#: Names from the frameworks' device profiles (msprof op types on Ascend, collectives), without a scope.
DEVICE_OPS = [("Conv2DBackpropFilterD", "convolution"), ("MatMulV2", "matmul"),
              ("SoftmaxCrossEntropyWithLogits", "loss"),
              ("HcomAllReduce", "communication"), ("ncclDevKernel_AllReduce_Sum_f32_RING_LL", "communication"),
              ("Memcpy HtoD (Pageable -> Device)", "data transfer"), ("TransData", "host/other")]


@pytest.mark.parametrize("name,scope,category", TORCH_OPS + MINDSPORE_OPS)
def test_real_op_names_fall_into_their_category(name, scope, category):
    assert categorise(name, scope) == category


@pytest.mark.parametrize("name,category", DEVICE_OPS)
def test_device_op_names_without_scope(name, category):
    assert categorise(name) == category


def test_every_rule_names_a_known_category():
    from harness.measure.op_categories import NAME_RULES, SCOPE_RULES

    assert {c for c, _ in NAME_RULES + SCOPE_RULES} <= set(CATEGORIES)
    assert {c for *_, c in TORCH_OPS + MINDSPORE_OPS} <= set(CATEGORIES)


# --- the record ----------------------------------------------------------------------------------------------------

def ops(*rows):
    return [{"name": n, "scope": s, "self_s": t, "calls": 2} for n, s, t in rows]


def test_summarise_per_step_categories_unattributed_and_tolerance():
    table = ops(("aten::mkldnn_convolution", "aten::conv2d", 0.50), ("aten::add_", "Optimizer.step#SGD.step", 0.10),
                ("aten::add_", "", 0.04), ("aten::empty", "", 0.02), ("aten::mkldnn_convolution", "aten::conv2d", 0.10))
    got = summarise(table, steps=2, step_s=0.40, profiler="p", trace="profile/trace.json")
    assert got["categories"] == pytest.approx({"convolution": 0.30, "optimizer update": 0.05,
                                               "elementwise and activation": 0.02, "host/other": 0.01})
    assert got["attributed_s"] == pytest.approx(0.38)
    assert got["unattributed_s"] == pytest.approx(0.02)
    assert got["coverage"] == pytest.approx(0.95) and got["within_tolerance"] and got["tolerance"] == TOLERANCE
    # the same name in two categories stays two rows; the same op in two table rows is one, its calls summed
    assert [(o["name"], o["category"], o["calls"]) for o in got["top_ops"]] == [
        ("aten::mkldnn_convolution", "convolution", 4), ("aten::add_", "optimizer update", 2),
        ("aten::add_", "elementwise and activation", 2), ("aten::empty", "host/other", 2)]
    assert got["top_ops"][0]["self_s_per_step"] == pytest.approx(0.30)


@pytest.mark.parametrize("covered,within", [(0.86, True), (0.84, False), (1.14, True), (1.16, False)])
def test_tolerance_edges(covered, within):
    got = summarise(ops(("Conv2D", "", covered)), steps=1, step_s=1.0, profiler="p", trace="t")
    assert got["within_tolerance"] is within
    assert got["unattributed_s"] == pytest.approx(max(0.0, 1 - covered))  # never negative when ops exceed the step


@pytest.mark.parametrize("value,what", [
    (None, "expected a dict"), ({"profiler": "p", "ops": [], "trace": "t"}, "non-empty"),
    ({"profiler": "p", "ops": [{"name": "Conv2D", "self_s": -1.0}], "trace": "t"}, "self_s"),
    ({"profiler": "p", "ops": [{"name": "Conv2D", "self_s": "1"}], "trace": "t"}, "self_s"),
    ({"profiler": "p", "ops": [{"name": "Conv2D", "self_s": 1.0}]}, "'trace'")])
def test_a_wrong_answer_of_the_hook_is_one_line(value, what):
    with pytest.raises(HarnessError) as exc:
        check_profile("mine", value)
    assert "backend 'mine': harness_profile returned" in str(exc.value) and what in str(exc.value)
    assert "\n" not in str(exc.value)


def record(backend, prof, case=None, device="cpu"):
    return {"schema": "harness.result/1", "kind": "measured", "case": case or f"gluon_resnet50_v1b-{backend}-{device}",
            "status": "ok", "run_id": "r1", "repeat": 0,
            "config": {"model": "gluon_resnet50_v1b", "backend": backend, "device": device, "settings": {}},
            "metrics": {"train": {"images_per_s": 100.0, "ms_per_step": {"p50": 90.0}, "profile": prof}},
            "samples": {"train_step_s": [0.09, 0.09]}, "env": {}}


def profile_of(step_s, categories, timed=0.09, profiler="prof"):
    attributed = sum(categories.values())
    return {"profiler": profiler, "steps": 5, "step_s": step_s, "categories": categories, "attributed_s": attributed,
            "unattributed_s": max(0.0, step_s - attributed), "coverage": attributed / step_s, "tolerance": TOLERANCE,
            "within_tolerance": abs(attributed / step_s - 1) <= TOLERANCE, "top_ops": [
                {"name": "Conv2D", "category": "convolution", "self_s_per_step": categories["convolution"],
                 "calls": 5}],
            "trace": "profile/trace.json", "timed_step_s": timed}


def test_records_with_and_without_a_profile_read_back(tmp_path):
    path = tmp_path / "r.jsonl"
    old = record("torch", None)
    del old["metrics"]["train"]["profile"]
    rows = [old, record("torch", profile_of(0.1, {"convolution": 0.06, "host/other": 0.03})),
            record("mindspore", {"skipped": "profile: the profiler cannot run here"})]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(read_records(path)) == 3
    bad = record("torch", profile_of(0.1, {"convolution": 0.06}))
    bad["metrics"]["train"]["profile"]["categories"]["convolution"] = "60 ms"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(HarnessError, match=r"metrics.train.profile"):
        read_records(path)


# --- the report ----------------------------------------------------------------------------------------------------

def test_report_puts_both_backends_side_by_side_with_sum_lines():
    recs = [record("torch", profile_of(0.100, {"convolution": 0.060, "normalisation": 0.020, "host/other": 0.011},
                                       profiler="torch.profiler")),
            record("mindspore", profile_of(0.200, {"convolution": 0.100, "normalisation": 0.040,
                                                   "optimizer update": 0.020}, timed=0.18,
                                                  profiler="mindspore.profiler")),
            record("torch", {"skipped": "profile: torch_npu.profiler is not importable"}, device="ascend")]
    text = "\n".join(profile_section(recs))
    assert "## Where the time goes" in text and "### gluon_resnet50_v1b" in text
    header = next(line for line in text.splitlines() if line.startswith("|") and "torch / cpu" in line)
    assert "mindspore / cpu" in header
    conv = next(line for line in text.splitlines() if line.startswith("| convolution"))
    assert "60.00 (60%)" in conv and "100.00 (50%)" in conv
    unattributed = next(line for line in text.splitlines() if line.startswith("| unattributed"))
    assert "9.00 (9%)" in unattributed and "40.00 (20%)" in unattributed
    assert "| pooling" not in text  # a category no case has is left out
    assert ("torch / cpu (torch.profiler, 5 steps): ops sum to 91.00 ms/step = 91% of the profiled step 100.00 ms "
            "(within ±15%)") in text
    assert "= 80% of the profiled step 200.00 ms (OUTSIDE ±15%)" in text and "timed steps' median 180.00 ms" in text
    assert "torch / ascend: no profile: profile: torch_npu.profiler is not importable" in text
    assert "## Where the time goes" in render_markdown(recs)


def test_report_without_profiles_has_no_section():
    rec = record("torch", None)
    del rec["metrics"]["train"]["profile"]
    assert profile_section([rec]) == [] and "Where the time goes" not in render_markdown([rec])


# --- settings ------------------------------------------------------------------------------------------------------

SUITE = """
models: [gluon_resnet50_v1b]
backends: [{backend}]
devices: [cpu]
settings: {{batch_size: 4, steps: 3, warmup: 1, eval_batches: 1, profile: {profile}{extra}}}
"""


def suite(tmp_path, backend="fake", profile="true", extra=""):
    p = tmp_path / "s.yaml"
    p.write_text(SUITE.format(backend=backend, profile=profile, extra=extra))
    return p


def test_profile_must_be_true_or_false(tmp_path, fake_backend):
    with pytest.raises(HarnessError) as exc:
        load_suite(suite(tmp_path, profile='"yes"'))
    assert "settings.profile: expected true/false, got str 'yes'" in str(exc.value) and "\n" not in str(exc.value)


def test_profile_needs_a_training_scenario_and_a_backend_with_a_profiler(tmp_path, fake_backend):
    from harness.config import Case, Settings
    from harness.run.validate import check_case

    with pytest.raises(HarnessError, match="profile: true profiles training steps; scenario eval"):
        load_suite(suite(tmp_path, extra=", scenario: eval"))
    info = {"name": "x", "models": ["gluon_resnet50_v1b"], "devices": ["cpu"], "supports": {}}
    c = Case("c", "gluon_resnet50_v1b", "x", "cpu", Settings(batch_size=4, steps=3, warmup=1, profile=True))
    with pytest.raises(HarnessError) as exc:
        check_case(c, info, lambda name: info)
    assert str(exc.value) == "profile: backend 'x' has no profiler hook (its info has no supports.profile)"
    check_case(c, {**info, "supports": {"profile": True}}, lambda name: info)


def test_declaring_a_profiler_without_the_hook_stops_the_backend_loading(fake_backend):
    import types

    import harness_fake
    import pluggy

    from harness.backends import hookspecs
    from harness.backends.loading import check_contract

    assert harness_fake.SUPPORTS["profile"]
    module = types.ModuleType("noprofiler")  # the fake's hooks, its info included, less harness_profile
    module.__dict__.update({n: getattr(harness_fake, n) for n in dir(harness_fake)
                            if n.startswith("harness_") and n != "harness_profile"})
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(module)
    with pytest.raises(HarnessError, match=r"backend 'x' declares supports.profile but does not implement "
                                           r"harness_profile"):
        check_contract(pm, "x")


# --- through harness run, on the fake backend ------------------------------------------------------------------------

def test_fake_backend_profile_is_recorded_after_everything_else(tmp_path, fake_backend, monkeypatch):
    monkeypatch.setenv("HARNESS_FAKE_STEP_SLEEP", "0.01")  # steps long enough for the window's clock to matter
    run_dir = run_suite(load_suite(suite(tmp_path)), tmp_path / "results", run_id="r1", quiet=True)
    (rec,) = read_records(run_dir / "results.jsonl")
    assert rec["status"] == "ok", rec["reason"]
    prof = rec["metrics"]["train"]["profile"]
    folder = run_dir / "cases" / rec["case"]
    assert prof["steps"] == 5 and prof["profiler"] == "fake profiler"
    assert set(prof["categories"]) == {"convolution", "normalisation", "optimizer update", "elementwise and activation"}
    assert prof["categories"]["convolution"] == pytest.approx(0.5 * prof["step_s"], rel=0.2)
    assert prof["coverage"] == pytest.approx(0.9, abs=0.1) and prof["within_tolerance"]
    assert (folder / prof["trace"]).is_file() and prof["trace"] == os.path.join("profile", "trace.json")
    assert prof["timed_step_s"] == pytest.approx(rec["metrics"]["train"]["ms_per_step"]["p50"] / 1e3)
    calls = (folder / "calls.log").read_text().split("\n")
    # 1 first + 3 timed training steps, evaluation, then the profile's 5 steps: never among the timed samples
    assert calls.index("profile") > max(i for i, c in enumerate(calls) if c == "eval")
    assert [c for c in calls[calls.index("profile"):] if c.startswith("step")] == [f"step {n}" for n in range(5, 10)]
    assert rec["metrics"]["train"]["timed_steps"] == 3


def test_a_profiler_that_cannot_run_is_a_skipped_profile_not_a_failed_case(tmp_path, fake_backend, monkeypatch):
    monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps({"0": "noprofiler"}))
    run_dir = run_suite(load_suite(suite(tmp_path)), tmp_path / "results", run_id="r1", quiet=True)
    (rec,) = read_records(run_dir / "results.jsonl")
    assert rec["status"] == "ok"
    assert rec["metrics"]["train"]["profile"] == {"skipped": "profile: the fake profiler is switched off for this case"}
    assert "no profile: profile: the fake profiler is switched off" in render_markdown([rec])


# --- the frameworks' own paths -------------------------------------------------------------------------------------

@pytest.mark.skipif(not have("torch"), reason="torch is not installed")
@pytest.mark.skipif(have("torch_npu"), reason="torch_npu is installed: the Ascend profiler is importable here")
def test_torch_npu_profiler_absent_says_what_failed():
    from harness_torch.profile import npu_profiler

    with pytest.raises(Unsupported, match=r"profile: torch_npu.profiler is not importable \(ModuleNotFoundError"):
        npu_profiler()


@pytest.mark.skipif(not have("mindspore"), reason="mindspore is not installed")
def test_mindspore_kernel_timeline_measures_the_time_between_kernels(tmp_path):
    from harness_mindspore.profile import kernel_timeline

    # the layout mindspore.profiler 2.10 writes (FRAMEWORK/cpu_op_execute_timestamp_0.txt): start ns, duration ms,
    # thread; the second kernel overlaps the first on another thread, then 2 ms with no kernel, then the last
    p = tmp_path / "cpu_op_execute_timestamp_0.txt"
    p.write_text("Default/Conv2D-op1;Conv2D;1000000000,3.0,11 1008000000,1.0,11\n"
                 "Default/ReLU-op2;ReLU;1002000000,2.0,12\n\n")
    line = kernel_timeline(str(p))
    assert line["launches"] == 3
    assert line["span_s"] == pytest.approx(9e-3) and line["busy_s"] == pytest.approx(5e-3)  # 4 ms between kernels
    p.write_text("\n")
    with pytest.raises(Unsupported, match="holds no kernel"):
        kernel_timeline(str(p))
    p.write_text("Default/Conv2D-op1;Conv2D;1000000000,3.0,11\nDefault/ReLU-op2;ReLU;1002000000,2.0\n")
    with pytest.raises(Unsupported, match=r"line 2: '1002000000,2.0' is not start_ns,duration_ms,thread"):
        kernel_timeline(str(p))


@pytest.mark.skipif(not have("mindspore"), reason="mindspore is not installed")
def test_mindspore_learning_rate_table_holds_its_last_value_for_the_window():
    from harness.config import Settings
    from harness.measure.profiles import PROFILE_STEPS
    from harness_mindspore.optim import _held

    assert _held([0.1, 0.05], Settings()) == [0.1, 0.05]
    assert _held([0.1, 0.05], Settings(profile=True)) == [0.1, 0.05] + [0.05] * PROFILE_STEPS


E2E = """
models: [gluon_resnet50_v1b]
backends: [torch, mindspore]
devices: [cpu]
settings: {width: 0.25, image_size: 64, batch_size: 16, steps: 6, warmup: 2, data: synthetic, eval: false,
           profile: true}
"""


@pytest.mark.slow
@pytest.mark.skipif(not (have("torch") and have("mindspore")), reason="needs both torch and mindspore installed")
def test_both_profilers_side_by_side_on_gluon_resnet50(tmp_path):
    from harness_mindspore.profile import BETWEEN_KERNELS

    p = tmp_path / "s.yaml"
    p.write_text(E2E)
    run_dir = run_suite(load_suite(p), tmp_path / "results", run_id="r1", quiet=True)
    recs = {r["config"]["backend"]: r for r in read_records(run_dir / "results.jsonl")}
    assert {b: r["status"] for b, r in recs.items()} == {"torch": "ok", "mindspore": "ok"}, \
        {b: r["reason"] for b, r in recs.items()}
    text = render_markdown(recs.values())
    header = next(line for line in text.split("## Where the time goes")[1].splitlines() if "torch / cpu" in line)
    assert "mindspore / cpu" in header
    for backend, rec in recs.items():
        prof = rec["metrics"]["train"]["profile"]
        assert "skipped" not in prof, prof
        assert (run_dir / "cases" / rec["case"] / prof["trace"]).exists()
        cats = prof["categories"]
        assert max(cats, key=cats.get) == "convolution", cats  # a ResNet-50 on CPU spends most in convolutions
        assert {"normalisation", "pooling", "loss", "optimizer update"} <= set(cats), cats
        assert prof["attributed_s"] + prof["unattributed_s"] == pytest.approx(max(prof["step_s"], prof["attributed_s"]))
        assert f"{backend} / cpu (" in text
    torch_prof = recs["torch"]["metrics"]["train"]["profile"]
    assert torch_prof["within_tolerance"], torch_prof["coverage"]
    ms_prof = recs["mindspore"]["metrics"]["train"]["profile"]
    assert ms_prof["attributed_s"] <= (1 + TOLERANCE) * ms_prof["step_s"]  # no kernel counted twice
    # MindSpore's CPU profiler records kernels only; the runtime's time between them comes from its kernel timeline
    # (one host/other row), and with it the categories meet the same tolerance as torch's
    assert any(o["name"] == BETWEEN_KERNELS for o in ms_prof["top_ops"]), ms_prof["top_ops"]
    assert ms_prof["within_tolerance"], (ms_prof["coverage"], 1e3 * ms_prof["unattributed_s"])
