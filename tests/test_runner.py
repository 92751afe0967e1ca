"""The runner and the core-owned loop, exercised through the numpy 'fake' backend."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results.records import SCHEMA, read_records
from harness.run.runner import run_suite
from harness.run.suite import load_suite

SUITE = """
name: fake
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {{batch_size: 4, steps: 5, warmup: 2, timeout: {timeout}}}
matrix: {{seed: {seeds}}}
"""


def run(tmp_path, seeds, plan=None, timeout=60, monkeypatch=None, **settings):
    if plan is not None:
        monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps(plan))
    extra = "".join(f", {k}: {json.dumps(v)}" for k, v in settings.items() if k != "batch_size")
    text = SUITE.format(timeout=timeout, seeds=list(seeds)).replace(
        "batch_size: 4", f"batch_size: {settings.get('batch_size', 4)}{extra}")
    p = tmp_path / "fake.yaml"
    p.write_text(text)
    run_dir = run_suite(load_suite(p), tmp_path / "results", run_id="r1", quiet=True)
    return run_dir, read_records(run_dir / "results.jsonl")


def case_dir(run_dir: Path, seed: int) -> Path:
    return run_dir / "cases" / f"gluon_resnet50_v1b-fake-cpu-seed={seed}"


def test_record_fields_and_layout(tmp_path, fake_backend):
    run_dir, (rec,) = run(tmp_path, [0], export=["npy"])
    assert run_dir == tmp_path / "results" / "fake" / "r1"
    assert rec["schema"] == SCHEMA and rec["status"] == "ok" and rec["reason"] is None
    assert rec["config"]["settings"]["batch_size"] == 4 and rec["config"]["backend"] == "fake"
    # the same threads for every framework: the CPUs this process may use, unless the case says otherwise
    threads = rec["env"]["threads_set"]
    assert threads["threads"] == threads["affinity_cpus"] == len(os.sched_getaffinity(0))
    assert threads["omp_num_threads"] == os.environ.get("OMP_NUM_THREADS", str(threads["threads"]))
    train = rec["metrics"]["train"]
    assert train["timed_steps"] == 5 and len(rec["samples"]["train_step_s"]) == 5
    assert set(train["ms_per_step"]) >= {"mean", "p50", "p90", "p99", "stdev", "count"}
    assert train["images_per_s"] > 0 and train["first_step_s"] > 0
    # losses are 1/n for global step n: the timed ones are steps 3..7
    assert rec["samples"]["train_loss"] == pytest.approx([1 / n for n in range(3, 8)])
    assert rec["metrics"]["eval"]["top1"] == 50.0 and rec["metrics"]["eval"]["top5"] == 100.0
    assert rec["metrics"]["eval"]["images"] == 12
    assert rec["metrics"]["memory"]["host_peak_bytes"] > 0
    assert rec["metrics"]["export"][0]["check"]["max_abs_diff"] == 0.0
    env = rec["env"]
    for key in ("framework", "framework_version", "device_model", "host", "cpu", "python",
                "harness_version", "git_commit", "backend"):
        assert key in env
    assert env["device_model"] == "fake-cpu"


def test_timed_region_holds_only_steps_and_syncs(tmp_path, fake_backend):
    run_dir, _ = run(tmp_path, [0])
    calls = (case_dir(run_dir, 0) / "calls.log").read_text().split()
    calls = [c for c in calls if not c.startswith(("total=", "spe="))]
    # warm-up: sync, step 1 (timed alone), sync, step 2, sync; then each timed step is step, sync
    i = calls.index("train_step")
    train = calls[i + 1:calls.index("to_host")]
    expected = ["sync", "step", "1", "sync", "step", "2", "sync",
                "step", "3", "sync", "step", "4", "sync", "step", "5", "sync", "step", "6", "sync", "step", "7", "sync"]
    assert train == expected  # nothing but steps and syncs; losses read once, after the loop


def test_first_step_is_reported_apart(tmp_path, fake_backend, monkeypatch):
    _, (rec,) = run(tmp_path, [6], plan={"6": "slow"}, monkeypatch=monkeypatch)
    train = rec["metrics"]["train"]
    assert train["first_step_s"] >= 0.3
    assert all(s < 0.2 for s in rec["samples"]["train_step_s"])  # the 0.3 s first step is not a sample
    assert train["ms_per_step"]["p50"] == pytest.approx(20, abs=15)


def test_failures_are_recorded_and_the_suite_goes_on(tmp_path, fake_backend, monkeypatch):
    plan = {"1": "raise", "2": "sigkill", "3": "hang", "4": "nodevice", "5": "nan"}
    t0 = time.monotonic()
    run_dir, recs = run(tmp_path, [1, 2, 3, 4, 5, 0], plan=plan, timeout=4, monkeypatch=monkeypatch)
    assert time.monotonic() - t0 < 40
    by = {r["config"]["settings"]["seed"]: r for r in recs}
    assert [r["config"]["settings"]["seed"] for r in recs] == [1, 2, 3, 4, 5, 0]
    assert by[1]["status"] == "failed" and "build: RuntimeError: model exploded on purpose" in by[1]["reason"]
    assert "model exploded on purpose" in by[1]["log_tail"] and "Traceback" in by[1]["log_tail"]
    assert by[2]["status"] == "failed" and "killed by signal SIGKILL" in by[2]["reason"]
    assert by[3]["status"] == "failed" and by[3]["reason"].startswith("timeout: case exceeded 4 s")
    assert by[4]["status"] == "skipped" and "no such device" in by[4]["reason"]
    assert by[5]["status"] == "failed" and "diverged at step 4" in by[5]["reason"]
    assert by[5]["metrics"]["train"]["timed_steps"] == 5  # what was measured is kept
    assert by[0]["status"] == "ok"
    assert (case_dir(run_dir, 1) / "case.log").exists()


def test_killing_a_running_case_from_outside(tmp_path, fake_backend, monkeypatch):
    """kill -9 of the case's process marks it failed; the next case still runs."""
    monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps({"7": "pause"}))
    (tmp_path / "s.yaml").write_text(SUITE.format(timeout=60, seeds=[7, 0]).replace("steps: 5", "steps: 200"))
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli.main", "run", str(tmp_path / "s.yaml"),
                             "--results", str(tmp_path / "results"), "--run-id", "k", "--quiet", "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "results" / "fake" / "k" / "cases" / "gluon_resnet50_v1b-fake-cpu-seed=7" / "pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    recs = read_records(tmp_path / "results" / "fake" / "k" / "results.jsonl")
    assert [r["status"] for r in recs] == ["failed", "ok"]
    assert "killed by signal SIGKILL" in recs[0]["reason"]


def test_each_case_runs_in_its_own_process_and_folder(tmp_path, fake_backend):
    run_dir, recs = run(tmp_path, [0, 8])
    cwds = {r["env"]["cwd"] for r in recs}
    assert cwds == {str(case_dir(run_dir, 0).resolve()), str(case_dir(run_dir, 8).resolve())}
    assert not any(r["env"]["loaded_torch"] for r in recs)  # the fake backend's child loads no torch
    pids = {(case_dir(run_dir, s) / "pid").read_text() for s in (0, 8)}
    assert len(pids) == 2 and str(os.getpid()) not in pids


def test_parent_imports_no_framework(tmp_path, fake_backend):
    code = ("import sys, harness.cli.main as c; "
            f"c.main(['run', {str(tmp_path / 's.yaml')!r}, '--results', {str(tmp_path / 'r')!r}, '--quiet']); "
            "print([m for m in ('torch', 'mindspore', 'torch_npu') if m in sys.modules])")
    (tmp_path / "s.yaml").write_text(SUITE.format(timeout=60, seeds=[0]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


def test_epochs_mode_counts_steps_from_the_data(tmp_path, fake_backend):
    _, (rec,) = run(tmp_path, [0], epochs=2)
    train = rec["metrics"]["train"]
    assert train["steps_per_epoch"] == 7 and train["total_steps"] == 14 and train["timed_steps"] == 12


def test_unwritable_results_folder(tmp_path, fake_backend):
    from harness.errors import HarnessError
    (tmp_path / "s.yaml").write_text(SUITE.format(timeout=60, seeds=[0]))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HarnessError, match="results folder is not writable"):
        run_suite(load_suite(tmp_path / "s.yaml"), blocker, quiet=True)


def test_a_backend_without_a_launcher_is_refused_multi_device_cases_at_load(tmp_path, fake_backend):
    with pytest.raises(HarnessError) as exc:
        run(tmp_path, [0, 1], devices=2)
    assert str(exc.value).endswith("case gluon_resnet50_v1b-fake-cpu-seed=0: devices: backend 'fake' names no "
                                   "multi-device launcher, so it runs on one device")


def test_time_to_accuracy_stops_at_the_target_and_records_the_clock(tmp_path, fake_backend, monkeypatch):
    # the fake backend's top-1 grows 5 points per step; the tiny dataset's 320 images at batch 40 are 8 steps per
    # epoch: 40% after epoch 1, 80% after 2 (time to accuracy needs labels that can be learned: not synthetic data)
    _, (rec,) = run(tmp_path, [0], plan={"0": "learn"}, monkeypatch=monkeypatch, target_top1=60.0, epochs=5,
                    data="tiny", batch_size=40)
    assert rec["status"] == "ok", rec["reason"]
    tta = rec["metrics"]["time_to_accuracy"]
    assert tta["reached"] and tta["epochs"] == 2.0 and tta["target_top1"] == 60.0
    assert [e["top1"] for e in tta["evaluations"]] == pytest.approx([40.0, 80.0])
    assert 0 < tta["evaluations"][0]["elapsed_s"] < tta["time_s"] and tta["init_s"] > 0
    assert rec["metrics"]["train"]["total_steps"] == 16  # stopped early, not the 40 steps of 5 epochs
    assert len(rec["samples"]["train_step_s"]) == 16 - 2  # warm-up steps are not timed samples


def test_time_to_accuracy_not_reached_says_so(tmp_path, fake_backend, monkeypatch):
    _, (rec,) = run(tmp_path, [0], plan={"0": "learn"}, monkeypatch=monkeypatch, target_top1=100.0, epochs=2,
                    eval_every_epochs=0.5, data="tiny", batch_size=40)
    tta = rec["metrics"]["time_to_accuracy"]
    assert rec["status"] == "ok" and not tta["reached"] and tta["time_s"] is None
    assert [e["step"] for e in tta["evaluations"]] == [4, 8, 12, 16]  # every 0.5 epoch (4 steps)


def test_resume_skips_done_cases_and_reruns_failed_and_changed_ones(tmp_path, fake_backend, monkeypatch):
    """A changed setting that identifies the case (harness.results.case_rules) runs it again; one that does not
    (the timeout: how long to wait, not what is measured) leaves it done, as compare and the report would match it."""
    from harness.run.runner import run_suite as run_again

    run_dir, first = run(tmp_path, [0, 1, 2], plan={"1": "nan"}, monkeypatch=monkeypatch)
    assert [r["status"] for r in first] == ["ok", "failed", "ok"]
    monkeypatch.setenv("HARNESS_FAKE_PLAN", "{}")  # the cause of the failure is fixed
    text = (tmp_path / "fake.yaml").read_text().replace("matrix: {seed: [0, 1, 2]}", "matrix: {seed: [0, 1, 2]}\n"
                                                        "overrides: [{match: {seed: 2}, settings: {steps: 6}}, "
                                                        "{match: {seed: 0}, settings: {timeout: 61}}]")
    (tmp_path / "fake.yaml").write_text(text)
    run_again(load_suite(tmp_path / "fake.yaml"), tmp_path / "results", run_id="r1", quiet=True, resume=True)
    records = read_records(run_dir / "results.jsonl")
    names = [r["case"].rsplit("=", 1)[1] for r in records]
    assert names == ["0", "1", "2", "1", "2"]  # seed 0 done (only its timeout changed); seed 1 failed before;
    # seed 2's steps changed
    assert [r["status"] for r in records[3:]] == ["ok", "ok"]
    assert records[4]["config"]["settings"]["steps"] == 6
    assert "resumed_at" in json.loads((run_dir / "run.json").read_text())


def test_a_suite_killed_mid_case_resumes_and_loses_nothing(tmp_path, fake_backend, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps({"1": "pause"}))  # seed 1: 0.2 s per step
    suite = tmp_path / "fake.yaml"
    suite.write_text(SUITE.format(timeout=60, seeds=[0, 1, 2]).replace("steps: 5", "steps: 40"))
    cmd = [sys.executable, "-m", "harness.cli.main", "run", str(suite), "--results", str(tmp_path / "results"),
           "--run-id", "r1", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run_dir = tmp_path / "results" / "fake" / "r1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run_dir / "cases" / "gluon_resnet50_v1b-fake-cpu-seed=1" /
                                               "result.json").exists():
        time.sleep(0.1)
    time.sleep(1.0)  # inside seed 1's timed steps
    proc.terminate()
    assert proc.wait(timeout=30) == 130  # interrupted; what was written is kept
    kept = read_records(run_dir / "results.jsonl")
    assert [r["case"][-1] for r in kept] == ["0"] and kept[0]["status"] == "ok"
    out = subprocess.run([*cmd[:5], "--resume", str(run_dir), "--no-report"], capture_output=True, check=False,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "seed=0: done in the resumed run, not run again" in out.stderr
    records = read_records(run_dir / "results.jsonl")
    assert [(r["case"][-1], r["status"]) for r in records] == [("0", "ok"), ("1", "ok"), ("2", "ok")]
    assert records[0] == kept[0]


def test_a_runner_killed_outright_leaves_no_worker_writing_into_the_resumed_run(tmp_path, fake_backend, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps({"0": "pause"}))  # 0.2 s per step
    suite = tmp_path / "fake.yaml"
    suite.write_text(SUITE.format(timeout=60, seeds=[0]).replace("steps: 5", "steps: 100"))
    cmd = [sys.executable, "-m", "harness.cli.main", "run", str(suite), "--results", str(tmp_path / "results"),
           "--run-id", "r1", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run_dir = tmp_path / "results" / "fake" / "r1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (case_dir(run_dir, 0) / "result.json").exists():
        time.sleep(0.05)
    worker = json.loads((case_dir(run_dir, 0) / "result.json").read_text())["pid"]
    os.killpg(proc.pid, signal.SIGKILL)  # the runner only: its worker runs in a session of its own
    proc.wait(timeout=30)
    assert os.path.exists(f"/proc/{worker}")
    monkeypatch.setenv("HARNESS_FAKE_PLAN", "{}")
    out = subprocess.run([*cmd[:5], "--resume", str(run_dir), "--no-report"], capture_output=True, check=False,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (f"stopped 1 process(es) an earlier, killed run left running in {case_dir(run_dir, 0).resolve()}"
            in out.stderr)
    assert not os.path.exists(f"/proc/{worker}") or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"
    assert [r["status"] for r in read_records(run_dir / "results.jsonl")] == ["ok"]


def test_resume_refuses_a_folder_that_is_not_a_run_of_this_suite(tmp_path, fake_backend):
    from harness.errors import HarnessError
    from harness.run.runner import resume_target

    run_dir, _ = run(tmp_path, [0])
    suite = load_suite(tmp_path / "fake.yaml")
    assert resume_target(run_dir, suite) == run_dir
    with pytest.raises(HarnessError, match=r"--resume .*nowhere: not a run folder \(no run.json\)"):
        resume_target(tmp_path / "nowhere", suite)
    other = tmp_path / "other.yaml"
    other.write_text((tmp_path / "fake.yaml").read_text().replace("name: fake", "name: other"))
    with pytest.raises(HarnessError, match="that run is of suite 'fake', not 'other'"):
        resume_target(run_dir, load_suite(other))


def test_resume_works_on_the_folder_it_is_given_wherever_it_lives(tmp_path, fake_backend, monkeypatch):
    import shutil

    from harness.cli.main import main

    run_dir, _ = run(tmp_path, [0, 1], plan={"1": "raise"}, monkeypatch=monkeypatch)
    moved = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(run_dir, moved)
    shutil.rmtree(tmp_path / "results")
    monkeypatch.setenv("HARNESS_FAKE_PLAN", "{}")
    assert main(["run", str(tmp_path / "fake.yaml"), "--resume", str(moved), "--no-report", "--quiet"]) == 0
    records = read_records(moved / "results.jsonl")
    assert [(r["case"][-6:], r["status"]) for r in records] == [("seed=0", "ok"), ("seed=1", "failed"),
                                                                ("seed=1", "ok")]
    assert not (tmp_path / "results").exists()  # nothing started anywhere else


def test_repeats_run_in_fresh_processes_interleaved_and_flag_their_noise(tmp_path, fake_backend):
    run_dir, records = run(tmp_path, [0, 1], repeats=2)
    assert [(r["case"][-6:], r["repeat"], r["repeats"]) for r in records] == [
        ("seed=0", 0, 2), ("seed=1", 0, 2), ("seed=0", 1, 2), ("seed=1", 1, 2)]  # round by round
    pids = {r["case"] + str(r["repeat"]): (case_dir(run_dir, int(r["case"][-1])) / f"rep{r['repeat']}" / "pid")
            .read_text() for r in records}
    assert len(set(pids.values())) == 4  # each run its own process
    for r in records:
        noise = r["noise"]
        assert set(noise) >= {"cv", "drift", "other_cores_busy", "steal_share", "unstable", "reasons"}
        assert r["env"]["host_checks"]["cpu_count"] == os.cpu_count()


def test_device_out_of_memory_is_recorded_as_such(tmp_path, fake_backend, monkeypatch):
    _, (rec,) = run(tmp_path, [7], plan={"7": "oom"}, monkeypatch=monkeypatch)
    assert rec["status"] == "failed"
    assert rec["reason"] == ("train: out of device memory: OutOfMemoryError: out of memory on the fake device "
                             "(tried 9 GiB)")
