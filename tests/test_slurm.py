"""``harness run --on slurm``: the cluster section, what each job asks for, the scheduler's states, and runs against
a real Slurm.

The cluster tests start the Slurm of ``.ci/slurm`` (munged, slurmctld and two slurmd on this host: nodes n1 and n2,
no accounting) when it is not up. Without Slurm's daemons, or as a user who cannot start them, they are skipped
naming what is missing; ``.ci/run`` installs ``slurm-wlm`` and sets ``HARNESS_REQUIRE_SLURM=1``, which turns that skip
into a failure.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HERE, REPO, make_dist, needs_mindspore, write_suite

from harness.config import Case, Settings
from harness.errors import HarnessError
from harness.results.records import read_records
from harness.run.runner import run_suite
from harness.run.slurm import scheduler
from harness.run.slurm.cluster import Cluster, place, sbatch_options, time_limit_minutes
from harness.run.suite import load_suite, parse_set

# --- the cluster section and what a job asks for ---------------------------------------------------------------------

SUITE = """
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {{width: 0.25, image_size: 32, batch_size: 8, num_classes: 10, warmup: 1, steps: {steps}, eval: false,
           data: synthetic, threads: 1, timeout: 300}}
matrix: {{seed: {seeds}}}
cluster: {{poll_s: 0.5, max_jobs: {max_jobs}}}
"""


def suite_file(tmp_path: Path, steps: int = 3, seeds: str = "[0, 1]", max_jobs: int = 4, extra: str = "") -> Path:
    return write_suite(tmp_path / "s.yaml", SUITE.format(steps=steps, seeds=seeds, max_jobs=max_jobs) + extra)


def test_the_cluster_section_loads_and_set_overrides_it(tmp_path, fake_backend):
    path = suite_file(tmp_path, extra="")
    text = path.read_text().replace("cluster: {poll_s: 0.5, max_jobs: 4}",
                                    "cluster: {partition: gpu, time: '2:00:00', setup: ['module load cuda'],"
                                    " gres: {cuda: gpu}, poll_s: 0.5}")
    path.write_text(text)
    suite = load_suite(path, parse_set(["cluster.partition=debug", "cluster.max_jobs=3", "steps=4"]))
    assert suite.cluster == Cluster(partition="debug", time="2:00:00", setup=("module load cuda",),
                                    gres={"cuda": "gpu"}, poll_s=0.5, max_jobs=3)
    assert all(c.settings.steps == 4 for c in suite.cases)


@pytest.mark.parametrize(("text", "message"), [
    ("cluster: {partiton: gpu}", "s.yaml: cluster.partiton: unknown key; did you mean 'partition'?"),
    ("cluster: {time: soon}", "s.yaml: cluster.time: 'soon' is not a Slurm time"),
    ("cluster: {max_jobs: 0}", "s.yaml: cluster.max_jobs: expected a whole number of at least 1, got 0"),
    ("cluster: {sbatch_options: [exclusive]}", "s.yaml: cluster.sbatch_options: 'exclusive' is not an sbatch option"),
    ("cluster: [gpu]", "s.yaml: cluster: expected a mapping, got list"),
])
def test_a_wrong_cluster_section_is_one_line_naming_the_key(tmp_path, fake_backend, text, message):
    path = suite_file(tmp_path)
    path.write_text(path.read_text().replace("cluster: {poll_s: 0.5, max_jobs: 4}", text))
    with pytest.raises(HarnessError) as err:
        load_suite(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_set_refuses_an_unknown_cluster_key(tmp_path, fake_backend):
    with pytest.raises(HarnessError, match=r"--set cluster\.qso: unknown key; did you mean 'qos'\?"):
        load_suite(suite_file(tmp_path), parse_set(["cluster.qso=high"]))


def case(device: str = "cuda", **kw) -> Case:
    return Case(name="c", model="gluon_resnet50_v1b", backend="torch", device=device, settings=Settings(**kw))


def test_a_case_of_more_devices_than_a_node_holds_spans_nodes():
    cluster = Cluster(devices_per_node=8)
    placed = place(case(devices=16), cluster)
    assert (placed.settings.devices, placed.settings.nodes) == (8, 2)
    assert place(case(devices=8), cluster).settings.nodes == 1
    assert place(case(devices=4, nodes=2), cluster) == case(devices=4, nodes=2)  # nodes given: devices per node
    with pytest.raises(HarnessError, match="devices 12 is not a whole number of 8-device nodes"):
        place(case(devices=12), cluster)


def test_a_case_that_cannot_be_placed_stops_the_run_before_anything_is_submitted(tmp_path, fake_backend,
                                                                                  monkeypatch):
    monkeypatch.setenv("HARNESS_FAKE_LAUNCHER", "torchrun")  # so the fake takes several devices
    path = suite_file(tmp_path)
    path.write_text(path.read_text().replace("threads: 1,", "threads: 1, devices: 3,")
                    .replace("max_jobs: 4}", "max_jobs: 4, devices_per_node: 2}"))
    with pytest.raises(HarnessError, match="devices 3 is not a whole number of 2-device nodes"):
        run_suite(load_suite(path), tmp_path / "results", quiet=True, on="slurm")
    assert not list((tmp_path / "results").glob("*/*/slurm"))


def test_what_a_job_asks_for():
    cluster = Cluster(partition="gpu", account="perf", qos="high", devices_per_node=8, cpus_per_task=32, mem="480G",
                      sbatch_options=("--exclusive",))
    opts = sbatch_options(place(case(devices=16, timeout=3000), cluster), cluster)
    assert opts == ["--nodes=2", "--ntasks-per-node=1", "--partition=gpu", "--account=perf", "--qos=high",
                    "--time=60", "--gres=gpu:8", "--cpus-per-task=32", "--mem=480G", "--exclusive"]
    ascend = sbatch_options(case("ascend", devices=8, threads=4), Cluster(time="1-00:00:00"))
    assert "--gres=npu:8" in ascend and "--time=1440" in ascend and "--cpus-per-task=32" in ascend
    assert not any(o.startswith("--gres") for o in sbatch_options(case("cpu", devices=2), Cluster()))


@pytest.mark.parametrize(("text", "minutes"), [("30", 30), ("1:30", 2), ("2:00:00", 120), ("1-2", 1560),
                                               ("0:20", 1)])
def test_slurm_times_are_whole_minutes(text, minutes):
    assert time_limit_minutes(text) == minutes


# --- what the scheduler says --------------------------------------------------------------------------------------

SCONTROL = ("JobId=41 JobName=harness-s-c UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=1 Nice=0 "
            "Account=(null) QOS=(null) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) Requeue=1 Restarts=0 "
            "BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:01:27 TimeLimit=00:01:00 TimeMin=N/A "
            "SubmitTime=2026-12-07T09:00:00 EligibleTime=2026-12-07T09:00:00 AccrueTime=2026-12-07T09:00:00 "
            "StartTime=2026-12-07T09:00:02 EndTime=2026-12-07T09:01:29 Deadline=N/A Partition=ci "
            "NodeList=n1 BatchHost=n1 NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 WorkDir=/tmp/x StdOut=/tmp/x/o\n"
            "JobId=42 JobName=h JobState=PENDING Reason=Resources ExitCode=0:0 SubmitTime=2026-12-07T09:00:01 "
            "StartTime=Unknown EndTime=Unknown NodeList=(null) NumNodes=2-2 TimeLimit=01:00:00\n")


def test_scontrol_states_and_times_are_read():
    jobs = scheduler.parse_scontrol(SCONTROL)
    timeout, pending = jobs["41"], jobs["42"]
    assert (timeout.state, timeout.exit_code, timeout.node_list, timeout.nodes) == ("TIMEOUT", "0:15", "n1", 1)
    facts = timeout.facts()
    assert (facts["pending_s"], facts["run_s"], facts["read_with"]) == (2.0, 87.0, "scontrol")
    assert pending.active and pending.reason == "Resources" and pending.nodes == 2 and pending.node_list == ""
    assert pending.facts()["pending_s"] is None
    word, reason = scheduler.ended_reason(timeout)
    assert word == "timeout"
    assert reason == ("timeout: Slurm job 41 TIMEOUT (exit code 0:15, reason TimeLimit, time limit 00:01:00, on n1): "
                      "Slurm stopped the job at its time limit")


def test_squeue_lists_states_without_exit_codes():
    text = ("3|COMPLETED|None|n1|1|2026-12-07T08:29:03|2026-12-07T08:29:04|2026-12-07T08:29:05|UNLIMITED\n"
            "4|PENDING|Priority||2|2026-12-07T08:29:03|N/A|N/A|1:00\n")
    jobs = scheduler.parse_squeue(text)
    assert not jobs["3"].active and jobs["3"].facts()["run_s"] == 1.0 and jobs["3"].exit_code == ""
    assert jobs["4"].active and jobs["4"].reason == "Priority" and jobs["4"].started is None and jobs["4"].nodes == 2


def test_sacct_states_are_read_where_the_cluster_keeps_accounting():
    # sacct --noheader --parsable2 -X --format=JobID,State,ExitCode,Reason,NodeList,NNodes,Submit,Start,End,Timelimit
    text = ("7|CANCELLED by 1000|0:15|None|gpu[03-04]|2|2026-12-07T09:00:00|2026-12-07T09:00:30|"
            "2026-12-07T09:10:30|04:00:00\n"
            "8|OUT_OF_MEMORY|0:125|OutOfMemory|gpu05|1|2026-12-07T09:00:00|2026-12-07T09:00:00|"
            "2026-12-07T09:00:09|04:00:00\n")
    jobs = scheduler.parse_sacct(text)
    assert jobs["7"].state == "CANCELLED" and jobs["7"].node_list == "gpu[03-04]" and jobs["7"].nodes == 2
    assert jobs["7"].facts()["pending_s"] == 30.0 and jobs["7"].facts()["read_with"] == "sacct"
    assert scheduler.ended_reason(jobs["7"])[0] == "interrupted"
    word, reason = scheduler.ended_reason(jobs["8"])
    assert word == "crashed" and "OUT_OF_MEMORY (exit code 0:125" in reason and "out of memory" in reason


# --- against a real Slurm --------------------------------------------------------------------------------------------

def _slurm_missing() -> list[str]:
    missing = [f"{c} (apt-get install slurm-wlm)" for c in ("slurmctld", "slurmd", "munged", "sbatch", "scontrol")
               if shutil.which(c) is None and shutil.which(c, path="/usr/sbin") is None]
    if not missing and os.geteuid() != 0:
        missing.append("root, to start the test cluster's daemons (or SLURM_CONF naming a running cluster)")
    return missing


@pytest.fixture(scope="session")
def slurm_cluster(request) -> str:
    """``SLURM_CONF`` of the tests' cluster (.ci/slurm), started once for every test process; with the time-limited
    run started on it (:func:`start_time_limited_run`)."""
    conf = os.environ.get("HARNESS_SLURM_CONF")
    if not conf:
        missing = _slurm_missing()
        if missing:
            message = "no Slurm to test against: missing " + "; ".join(missing)
            if os.environ.get("HARNESS_REQUIRE_SLURM"):
                pytest.fail(message)
            pytest.skip(message)
        with open("/tmp/harness-slurm.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            out = subprocess.run(["bash", str(REPO / ".ci" / "slurm" / "start")], capture_output=True, text=True,
                                 check=False)
        if out.returncode != 0:
            pytest.fail(f"the test Slurm did not start: {out.stderr.strip()[-600:]}")
        conf = out.stdout.strip().splitlines()[-1]
    start_time_limited_run(conf, time_limit_dir(request.config))
    return conf


def time_limit_dir(config: pytest.Config) -> Path:
    """Where this test run's time-limited run lives: one per pytest run, shared by its test processes."""
    uid = getattr(config, "workerinput", {}).get("testrunuid") or f"pid{os.getpid()}"
    return Path("/tmp") / f"harness-slurm-time-limit-{uid}"


def start_time_limited_run(conf: str, where: Path) -> None:
    """Start, once per pytest run (by whichever test process gets here first), a run whose one case outlives its
    1-minute Slurm time limit (Slurm's least; it checks limits every 30 s). It starts with the first Slurm test,
    its test is scheduled among the last, so the minute passes while other tests run and no test process sits
    waiting for it. (The case only sleeps, on a CPU its node has spare.) Its exit status lands in ``rc``."""
    with open("/tmp/harness-slurm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (where / "started").exists():
            return
        where.mkdir(parents=True, exist_ok=True)
        site = make_dist(where / "site", "harness-fake", HERE / "fakebackend" / "harness_fake.py",
                         {"fake": "harness_fake"})
        cmd = [sys.executable, "-m", "harness.cli.main", "run", str(suite_file(where, seeds="[0]")), "--on", "slurm",
               "--set", "cluster.time=1", "--results", str(where / "r"), "--run-id", "x", "--no-report", "--quiet"]
        err, rc, part = (shlex.quote(str(where / name)) for name in ("err", "rc", "rc.part"))
        script = f"{shlex.join(cmd)} 2>{err}; echo $? >{part} && mv {part} {rc}"
        subprocess.Popen(["sh", "-c", script], cwd=REPO, start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "SLURM_CONF": conf, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
                              "HARNESS_FAKE_PLAN": json.dumps({"0": "hang"})})
        (where / "started").touch()


@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_cluster)
    return slurm_cluster


def _ctrl_c_reaches_it() -> None:
    # A shell without job control starts a background job with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored: under `.ci/run &` the harness would never see the Ctrl-C this test sends. At a terminal, Ctrl-C goes
    # to a foreground process, whose SIGINT is not ignored: that is what this gives the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def harness_run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness.cli.main", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, cwd=REPO,
                            preexec_fn=_ctrl_c_reaches_it)


def submissions(run_dir: Path) -> list[dict]:
    path = run_dir / "slurm" / "jobs.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(what, timeout: float = 120.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def job_state(job_id: str) -> str:
    info = scheduler.job_states([job_id]).get(job_id)
    return info.state if info else "UNKNOWN"


def by_case(records: list[dict]) -> dict[str, str]:
    return {r["case"]: r["status"] for r in records}


@pytest.mark.slow
@pytest.mark.first
def test_a_suite_on_slurm_reports_the_same_cases_and_statuses_as_run_here(tmp_path, fake_backend, slurm, monkeypatch):
    monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps({"2": "oom"}))
    suite = load_suite(suite_file(tmp_path, seeds="[0, 1, 2, 3]", max_jobs=4))
    here = read_records(run_suite(suite, tmp_path / "local", run_id="r", quiet=True) / "results.jsonl")
    t0 = time.monotonic()
    shown = io.StringIO()
    run_dir = run_suite(suite, tmp_path / "slurm", run_id="r", stream=shown, on="slurm")
    elapsed = time.monotonic() - t0
    there = read_records(run_dir / "results.jsonl")
    assert by_case(there) == by_case(here) and len(there) == 4
    assert sorted(by_case(there).values()) == ["failed", "ok", "ok", "ok"]
    jobs = submissions(run_dir)
    assert len(jobs) == 4 and {j["case"] for j in jobs} == set(by_case(there))
    for rec in there:
        slurm_facts = rec["env"]["slurm"]
        assert slurm_facts["job_id"] in {j["job_id"] for j in jobs} and slurm_facts["state"] == "COMPLETED"
        assert slurm_facts["nodes"] == 1 and slurm_facts["tasks"] == 1 and slurm_facts["node_list"] in ("n1", "n2")
        assert slurm_facts["pending_s"] >= 0 and slurm_facts["run_s"] >= 0
        assert (run_dir / rec["log"]).is_file()
    lines = shown.getvalue().splitlines()  # the plain-line mode, as in a CI log: each job's states and its node
    for job in jobs:
        mine = [line for line in lines if line.split(": ")[0].endswith(job["case"])]
        assert any(f"submitted as Slurm job {job['job_id']}" in line for line in mine), lines
        assert any(re.search(rf"\(Slurm job {job['job_id']} on n[12]; pending \d+ s, ran \d+ s\)$", line)
                   for line in mine), lines
    failed = next(r for r in there if r["status"] == "failed")
    assert "out of memory" in failed["reason"]
    rc = subprocess.run([sys.executable, "-m", "harness.cli.main", "report", str(run_dir)], capture_output=True,
                        text=True, check=False, cwd=REPO)
    assert rc.returncode == 0 and "gluon_resnet50_v1b" in rc.stdout
    # the submission overhead, for the record (pytest -s): Slurm's submit-to-start, and submit to the case's start
    starts = [(dt.datetime.fromisoformat(r["started_at"])
               - dt.datetime.fromisoformat(r["env"]["slurm"]["submitted_at"])).total_seconds() for r in there]
    print(f"4 cases on the test Slurm in {elapsed:.1f} s (here: {sum(r['duration_s'] for r in here):.1f} s of cases); "
          f"Slurm pending {[r['env']['slurm']['pending_s'] for r in there]} s; submitted to the case's start "
          f"{[round(x, 2) for x in starts]} s")


RANKS = """
models: [gluon_resnet50_v1b]
devices: [cpu]
settings: {width: 0.25, image_size: 32, batch_size: 8, num_classes: 10, warmup: 1, steps: 3, threads: 1,
           data: tiny, eval: false, timeout: 300}
include:
  - {models: [gluon_resnet50_v1b], backends: [torch], devices: [cpu], settings: {nodes: 2, devices: 1}}
  - {models: [gluon_resnet50_v1b], backends: [mindspore], devices: [cpu], settings: {devices: 2}}
cluster: {poll_s: 0.5}
"""


@pytest.mark.slow
@pytest.mark.first
@needs_mindspore
def test_torchrun_across_two_nodes_and_msrun_on_two_devices_merge_their_ranks(tmp_path, slurm):
    suite = load_suite(write_suite(tmp_path / "ranks.yaml", "backends: []\n" + RANKS))
    run_dir = run_suite(suite, tmp_path / "results", run_id="r", quiet=True, on="slurm")
    records = {r["config"]["backend"]: r for r in read_records(run_dir / "results.jsonl")}
    for backend, nodes in (("torch", 2), ("mindspore", 1)):
        rec = records[backend]
        assert rec["status"] == "ok", (backend, rec["reason"], rec.get("log_tail"))
        ranks = rec["metrics"]["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1] and all(r["status"] == "ok" for r in ranks)
        assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]  # one model, trained in step
        assert rec["metrics"]["world_size"] == 2 and set(rec["samples"]["train_step_s_by_rank"]) == {"0", "1"}
        assert rec["metrics"]["train"]["images_per_s"] == pytest.approx(sum(r["images_per_s"] for r in ranks))
        assert rec["env"]["slurm"]["nodes"] == nodes and rec["env"]["slurm"]["tasks"] == nodes
    assert records["torch"]["env"]["slurm"]["node_list"] == "n[1-2]"
    case_dir = run_dir / Path(records["torch"]["log"]).parent
    rendezvous = [json.loads((case_dir / f"case.node{k}.json").read_text())["settings"] for k in (0, 1)]
    assert [s["node_rank"] for s in rendezvous] == [0, 1]
    assert rendezvous[0]["master_addr"] == rendezvous[1]["master_addr"] == "127.0.0.1"  # n1's NodeAddr


@pytest.mark.slow
@pytest.mark.first
def test_scancel_of_one_job_keeps_the_others_and_resume_reruns_only_it(tmp_path, fake_backend, slurm):
    path = suite_file(tmp_path, steps=30, seeds="[0, 1, 2]")
    proc = harness_run(str(path), "--on", "slurm", "--results", str(tmp_path / "r"), "--run-id", "x", "--no-report",
                       env={"HARNESS_FAKE_PLAN": json.dumps({"1": "pause"})})  # seed 1: 0.2 s a step, 6 s
    run_dir = tmp_path / "r" / "s" / "x"
    job = wait_for(lambda: next((j for j in submissions(run_dir) if j["case"].endswith("seed=1")), None))
    wait_for(lambda: job_state(job["job_id"]) == "RUNNING")
    subprocess.run(["scancel", job["job_id"]], check=True)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    first = read_records(run_dir / "results.jsonl")
    statuses = by_case(first)
    cancelled = next(r for r in first if r["case"].endswith("seed=1"))
    assert statuses == {r["case"]: ("failed" if r is cancelled else "ok") for r in first} and len(first) == 3
    assert cancelled["reason"].startswith(f"interrupted: Slurm job {job['job_id']} CANCELLED")
    resumed = harness_run(str(path), "--resume", str(run_dir), "--no-report")
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    records = read_records(run_dir / "results.jsonl")
    assert records[:3] == first and len(records) == 4 and records[3]["case"] == cancelled["case"]
    assert records[3]["status"] == "ok"
    assert [j["case"] for j in submissions(run_dir)].count(cancelled["case"]) == 2 and len(submissions(run_dir)) == 4
    assert "done in the resumed run, not run again" in err


@pytest.mark.slow
@pytest.mark.first
def test_kill_9_then_resume_loses_no_record_and_runs_no_case_twice(tmp_path, fake_backend, slurm):
    path = suite_file(tmp_path, steps=12, seeds="[0, 1, 2]", max_jobs=2)
    plan = {"HARNESS_FAKE_PLAN": json.dumps({str(s): "pause" for s in range(3)})}  # 2.4 s a case
    proc = harness_run(str(path), "--on", "slurm", "--results", str(tmp_path / "r"), "--run-id", "x", "--no-report",
                       env=plan)
    run_dir = tmp_path / "r" / "s" / "x"
    first_two = wait_for(lambda: (jobs := submissions(run_dir)) and len(jobs) == 2 and jobs)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: job_state(first_two[0]["job_id"]) not in scheduler.ACTIVE)  # one ends while nobody watches
    resumed = harness_run(str(path), "--resume", str(run_dir), "--no-report", env=plan)
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    records = read_records(run_dir / "results.jsonl")
    jobs = submissions(run_dir)
    assert sorted(r["case"] for r in records) == sorted(j["case"] for j in jobs) and len(jobs) == 3
    assert all(r["status"] == "ok" for r in records)
    assert {r["env"]["slurm"]["job_id"] for r in records} == {j["job_id"] for j in jobs}
    assert "recovered: " in err


@pytest.mark.slow
@pytest.mark.first
def test_ctrl_c_cancels_the_jobs_it_submitted(tmp_path, fake_backend, slurm):
    path = suite_file(tmp_path, steps=200, seeds="[0]")
    proc = harness_run(str(path), "--on", "slurm", "--results", str(tmp_path / "r"), "--run-id", "x", "--no-report",
                       env={"HARNESS_FAKE_PLAN": json.dumps({"0": "pause"})})
    run_dir = tmp_path / "r" / "s" / "x"
    job = wait_for(lambda: (jobs := submissions(run_dir)) and jobs[0])
    wait_for(lambda: job_state(job["job_id"]) == "RUNNING")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    wait_for(lambda: job_state(job["job_id"]) not in scheduler.ACTIVE)
    assert job_state(job["job_id"]) == "CANCELLED"
    (rec,) = read_records(run_dir / "results.jsonl")
    assert rec["status"] == "failed" and rec["reason"].startswith("interrupted: harness run was stopped")


@pytest.mark.slow  # (not 'first': its run started with the first Slurm test; by the time this runs it has ended)
def test_a_job_past_its_time_limit_is_a_timeout_with_slurms_reason(slurm, request):
    where = time_limit_dir(request.config)
    rc = wait_for(lambda: (where / "rc").is_file() and (where / "rc").read_text().strip(), timeout=240, every=1)
    assert rc == "1", (where / "err").read_text()[-2000:]
    (rec,) = read_records(where / "r" / "s" / "x" / "results.jsonl")
    assert rec["status"] == "failed" and rec["reason"].startswith("timeout: Slurm job ")
    assert "TIMEOUT" in rec["reason"] and "time limit 00:01:00" in rec["reason"]
    assert rec["env"]["slurm"]["state"] == "TIMEOUT" and rec["env"]["slurm"]["run_s"] >= 60
