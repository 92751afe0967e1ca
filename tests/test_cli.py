"""The command line: one-line errors with exit status 2, list, report, and the smoke suite."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from backends import registry
from conftest import needs_mindspore

REPO = Path(__file__).resolve().parent.parent


def harness(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli.main", *args], capture_output=True, check=False,
                          text=True, cwd=cwd, timeout=timeout)


GOOD = """
models: [gluon_resnet50_v1b]
backends: [torch]
devices: [cpu]
settings: {batch_size: 8}
"""


@pytest.mark.parametrize("text, expect", [
    (GOOD.replace("batch_size", "batch_szie"), "settings.batch_szie: unknown setting; did you mean 'batch_size'?"),
    (GOOD.replace("gluon_resnet50_v1b", "resnet50"), "models[0]: unknown model 'resnet50'"),
    (GOOD + "matrix: {data: [folder]}\noverrides:\n  - settings: {data_root: /no/imagenet}\n",
     "data_root '/no/imagenet': no such folder"),
    (GOOD.replace("8}", "8"), "malformed YAML"),
])
def test_bad_suite_is_one_line_exit_2(tmp_path, text, expect):
    (tmp_path / "bad.yaml").write_text(text)
    out = harness("run", str(tmp_path / "bad.yaml"), "--results", str(tmp_path / "r"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and "Traceback" not in out.stderr
    assert expect in lines[0] and str(tmp_path / "bad.yaml") in lines[0]
    assert not (tmp_path / "r").exists()  # nothing ran


def test_bad_set_and_missing_paths(tmp_path):
    out = harness("run", str(REPO / "suites" / "smoke.yaml"), "--set", "widht=0.5")
    assert out.returncode == 2 and "--set.widht: unknown setting; did you mean 'width'?" in out.stderr
    out = harness("report", str(tmp_path / "nothing"))
    assert out.returncode == 2 and f"{tmp_path / 'nothing'}: no such file or folder" in out.stderr


def test_list_says_what_is_usable_and_why_not():
    out = harness("list")
    assert out.returncode == 0, out.stderr
    assert "gluon_resnet50_v1b" in out.stdout and "25,557,032" in out.stdout
    cpu = next(line for line in out.stdout.splitlines() if "| torch" in line and "| cpu" in line)
    assert "yes" in cpu
    ascend = next(line for line in out.stdout.splitlines() if "| torch" in line and "| ascend" in line)
    status = registry()["torch"].hook.harness_probe_device(device="ascend")  # what the backend says of the device
    assert ascend.split("|")[4].strip().startswith("yes" if status["available"] else "no")
    assert status["available"] or status["reason"] in ascend
    out = harness("plugins")
    assert out.returncode == 0 and "harness_torch.plugin" in out.stdout


@pytest.mark.slow
@pytest.mark.first
@needs_mindspore
def test_smoke_suite_end_to_end(tmp_path):
    """The README's main job through the CLI: both backends, both data sources, a report, real learning on the tiny
    set. Its gluon cases: every model on both backends is trained by tests/test_backend_contract.py and checked
    for parity by tests/test_parity.py, and the whole suite's cases are validated at load by
    tests/test_suite.py::test_shipped_suites_load."""
    out = harness("run", str(REPO / "suites" / "smoke.yaml"), "--only", "gluon*", "--results", str(tmp_path),
                  "--run-id", "smoke", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "## gluon_resnet50_v1b" in out.stdout and "train images/s" in out.stdout
    assert "## Backends side by side" in out.stdout and "mindspore / torch" in out.stdout
    run = tmp_path / "smoke" / "smoke"
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    by = {(r["config"]["backend"], r["config"]["settings"]["data"]): r for r in records
          if r["config"]["model"] == "gluon_resnet50_v1b" and r["config"]["settings"]["scenario"] == "train"}
    assert set(by) == {(b, d) for b in ("torch", "mindspore") for d in ("synthetic", "tiny")}
    assert all(r["status"] == "ok" for r in records), [r["reason"] for r in records]
    # the input pipeline alone on the same folder, in both backends, at 1 and 2 workers: the data ceiling
    feeds = {r["config"]["backend"]: r["metrics"]["input_pipeline"] for r in records
             if r["config"]["settings"]["scenario"] == "data"}
    assert set(feeds) == {"torch", "mindspore"}
    for feed in feeds.values():
        assert {(p["pipeline"], p["workers"]) for p in feed["pipelines"]} == {
            (p, w) for p in ("backend", "core") for w in (1, 2)}
        assert all(p["images_per_s"] > 0 for p in feed["pipelines"]) and feed["per_image"]["decode_ms"] > 0
    assert "data ceiling images/s" in out.stdout
    for backend, framework, formats in (("torch", "PyTorch", ["onnx"]), ("mindspore", "MindSpore", ["mindir", "onnx"])):
        tiny = by[backend, "tiny"]
        # 10 classes: chance is 10%
        assert tiny["metrics"]["eval"]["top1"] >= 60.0, (backend, tiny["metrics"]["eval"])
        assert tiny["metrics"]["eval"]["images"] == 100
        assert tiny["env"]["framework"] == framework and tiny["env"]["device_model"]
        exports = tiny["metrics"]["export"]
        assert [e["format"] for e in exports] == formats
        for e in exports:
            assert e["check"]["max_abs_diff"] < 1e-4, (backend, e)
            assert (run / "cases" / f"gluon_resnet50_v1b-{backend}-cpu-data=tiny" / e["path"]).exists()
        syn = by[backend, "synthetic"]
        assert syn["metrics"]["train"]["timed_steps"] == 10 and len(syn["samples"]["train_step_s"]) == 10


def test_doctor_prints_its_findings_and_exits_1_on_an_unfit_host(monkeypatch, capsys):
    import harness.measure.doctor as doctor
    from harness.cli.main import main

    real = doctor.gather

    def host(load: float):
        """This host as the real readers see it, made quiet (no busy process, no other CPU use, memory to spare,
        no accelerator) but for a 1-minute load of ``load``."""
        def gather(interval, root=None):
            facts = real(interval, root)
            facts.update(busy=[], load=(load, load, load), nvidia=None, ascend=None)
            facts["window"] = {**(facts["window"] or {}), "other_cores_busy": 0.0, "steal_s": 0.0}
            if facts["memory"] is not None:
                facts["memory"] = {**facts["memory"], "available_mib": 1 << 20}
            return facts
        return gather

    monkeypatch.setattr(doctor, "gather", host(0.0))
    assert main(["doctor", "--interval", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "busy processes" in out and "load average" in out and "memory" in out
    assert "fit for benchmarking" in out and "unfit" not in out
    monkeypatch.setattr(doctor, "gather", host(64.0))
    assert main(["doctor", "--interval", "0.1"]) == 1
    out = capsys.readouterr().out
    assert "1-minute load 64.00" in out and "unfit for benchmarking: 1 failed check(s)" in out
