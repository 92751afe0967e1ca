"""The conformance suite ships with harness: every backend passes it, a broken one fails it in one line."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import HERE, have, make_dist, needs_mindspore

from harness.backends.conformance import check_backend
from harness.models.specs import MODELS

GOOD = (HERE / "fakebackend" / "harness_fake.py").read_text()
#: The variant MindSpore's full conformance run checks; the others get golden-only runs.
FIRST = next(iter(MODELS))


def _failed(results):
    return [r for r in results if r["status"] == "fail"]


@pytest.mark.parametrize("name", [
    "torch",
    pytest.param("mindspore", marks=needs_mindspore),
    pytest.param("onnxruntime", marks=pytest.mark.skipif(not have("harness_onnxruntime"),
                                                        reason="pip install -e plugins/onnxruntime")),
])
def test_shipped_backends_pass(name):
    # MindSpore's golden checks compile six networks: one here, the others in tests of their own that xdist spreads
    results = check_backend(name, model=FIRST if name == "mindspore" else None)
    assert not _failed(results), _failed(results)
    checks = {r["check"] for r in results if r["status"] == "pass"}
    assert "harness_inference_session(" + {"torch": "eager", "mindspore": "graph",
                                           "onnxruntime": "onnxruntime"}[name] + ", batch 4)" in checks
    if name != "onnxruntime":
        assert "harness_train_step: finite loss, weights updated" in checks
        assert "harness_write_checkpoint / harness_read_checkpoint: exact round trip" in checks
        # Every variant computes the reference's function: logits, loss, BN statistics, updates (golden checks).
        for kind in ("eval logits vs NumPy reference", "running statistics", "after one step vs golden values"):
            assert sum(c.startswith("golden") and kind in c for c in checks) == (
                1 if name == "mindspore" else len(MODELS)), kind
    else:
        assert {"check": "golden checks", "status": "skip",
                "detail": "it only loads exports: it builds no network of its own"} in results


@needs_mindspore
@pytest.mark.parametrize("model", [m for m in MODELS if m != FIRST])
def test_mindspore_computes_every_other_variant_as_the_reference_does(model):
    results = check_backend("mindspore", model=model, golden_only=True)
    assert not _failed(results), _failed(results)
    checks = {r["check"] for r in results if r["status"] == "pass"}
    for kind in ("eval logits vs NumPy reference", "running statistics", "after one step vs golden values"):
        assert sum(c.startswith("golden") and kind in c and model in c for c in checks) == 1, (kind, checks)


def test_an_outside_backend_written_from_the_guide_passes(fake_backend):
    """tests/fakebackend: NumPy only, registered from a dist-info folder outside this repo's packaging."""
    results = check_backend("fake")
    assert not _failed(results), _failed(results)
    assert sum(r["status"] == "pass" for r in results) >= 15


def _register(tmp_path, monkeypatch, name, source, beside=()):
    import importlib
    import os

    root = make_dist(tmp_path / f"site_{name}", f"harness-{name}", None, {name: f"harness_{name}"})
    (root / f"harness_{name}.py").write_text(source)
    for module in beside:  # modules it imports, in the same folder
        shutil.copy(HERE / "fakebackend" / module, root / module)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    importlib.invalidate_caches()


def test_wrong_result_shapes_fail_in_one_line_naming_the_hook(tmp_path, monkeypatch):
    src = (GOOD.replace('"reason": None if ok else f"no {device} in the fake backend"', '"reason": None')
           .replace("return (n // 2, n, n)", "return (n // 2, n)"))
    _register(tmp_path, monkeypatch, "broken", src)
    failed = {r["check"]: r["detail"] for r in _failed(check_backend("broken"))}
    assert failed["harness_probe_device(gpu)"] == (
        "backend 'broken': harness_probe_device(device='gpu') returned {'available': False, 'reason': None, "
        "'model': None, 'count': 0}: an unavailable device needs a 'reason' string")
    assert failed["harness_eval_step + harness_to_host: [top1, top5, count]"] == (
        "backend 'broken': harness_to_host(eval step output) returned [2.0, 4.0]: expected [top1_correct, "
        "top5_correct, count] as numbers")
    out = subprocess.run([sys.executable, "-m", "harness.cli.main", "check-backend", "broken"], capture_output=True,
                         check=False, text=True, timeout=300)
    assert out.returncode == 1 and "fail" in out.stdout and "Traceback" not in out.stdout + out.stderr


def test_a_hook_with_a_wrong_signature_fails_the_load_check(tmp_path, monkeypatch):
    _register(tmp_path, monkeypatch, "badsig", GOOD.replace("def harness_synchronize(device):",
                                                            "def harness_synchronize(device, stream):"))
    (first, *rest) = check_backend("badsig")
    assert first["status"] == "fail" and "stream" in first["detail"] and not rest
    out = subprocess.run([sys.executable, "-m", "harness.cli.main", "check-backend", "nosuch"], capture_output=True,
                         check=False, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "unknown backend 'nosuch'" in out.stderr


SYNC_CHECK = "harness_synchronize waits for queued work (train steps)"


@pytest.mark.parametrize("sync", ["waits", "broken"])
def test_a_synchronize_that_does_not_wait_fails_that_check_alone(tmp_path, monkeypatch, sync):
    """tests/fakebackend/harness_fake_async.py queues its train steps on a thread; with
    HARNESS_FAKE_ASYNC_SYNC=broken its harness_synchronize returns without waiting for them."""
    _register(tmp_path, monkeypatch, "fake_async", (HERE / "fakebackend" / "harness_fake_async.py").read_text(),
              beside=["harness_fake.py"])
    monkeypatch.setenv("HARNESS_FAKE_ASYNC_SYNC", sync)
    results = check_backend("fake_async")
    by_name = {r["check"]: r for r in results}
    assert by_name[SYNC_CHECK]["status"] == ("pass" if sync == "waits" else "fail"), by_name[SYNC_CHECK]
    assert [r["check"] for r in _failed(results)] == ([] if sync == "waits" else [SYNC_CHECK])
    if sync == "broken":
        assert by_name[SYNC_CHECK]["detail"].startswith("harness_synchronize returned before the queued work had "
                                                        "finished: reading the last result after it took ")
        assert "\n" not in by_name[SYNC_CHECK]["detail"]


def test_the_train_state_checks_of_the_fake_backend(fake_backend):
    """supports["checkpoint"]: save/load resume exactly; a missing or foreign folder is refused naming the file;
    every format of supports["export"] exports."""
    passed = {r["check"] for r in check_backend("fake") if r["status"] == "pass"}
    assert {"TrainStep.save / TrainStep.load: the step after a restore is the same",
            "TrainStep.load refuses a folder without the state with HarnessError naming the file",
            "TrainStep.load refuses the state of another shape (num_classes 7) with HarnessError naming the file",
            "harness_export(npy)", "harness_eval_step counts only labels >= 0 (the core pads with -1)",
            SYNC_CHECK} <= passed
