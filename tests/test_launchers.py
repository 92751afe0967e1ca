"""Multi-device cases through torchrun and msrun: commands, sharding, merging, and real 2-worker CPU runs."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from backends import params_where

from harness.backends.hook_checks import scenarios_of
from harness.config import Case, Settings
from harness.data.orders import shard_order
from harness.results.records import read_records
from harness.run.launchers import get_launcher
from harness.run.launchers.ranks import merge_ranks, rank_result_file
from harness.run.runner import run_suite
from harness.run.suite import load_suite

REPO = Path(__file__).resolve().parents[1]


def case(backend="torch", **kw) -> Case:
    return Case(name="c", model="gluon_resnet50_v1b", backend=backend, device="cpu", settings=Settings(**kw))


def test_torchrun_and_msrun_commands(tmp_path):
    argv, env = get_launcher("torchrun").command(
        case(devices=4, nodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29600),
        tmp_path / "case.json", tmp_path / "result.json", tmp_path)
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1", "--master-port=29600",
            "--max-restarts=0"} <= set(argv)
    assert argv[-4:] == ["-m", "harness.run.worker", str(tmp_path / "case.json"), str(tmp_path / "result.json")]
    assert env["HARNESS_LAUNCHED"] == "1"
    argv, env = get_launcher("msrun").command(case("mindspore", devices=8, rank_table_file="rank_table_8p.json"),
                                              tmp_path / "case.json", tmp_path / "result.json", tmp_path)
    assert argv[1:3] == ["-m", "mindspore.parallel.cluster.run"]
    assert {"--worker_num=8", "--local_worker_num=8", "--node_rank=0", "--join=True"} <= set(argv)
    assert argv[-3].endswith("harness/run/_worker_main.py")
    assert env["RANK_TABLE_FILE"].endswith("rank_table_8p.json")
    argv, _ = get_launcher("single").command(case(), tmp_path / "c.json", tmp_path / "r.json", tmp_path)
    assert argv[1:] == ["-m", "harness.run.worker", str(tmp_path / "c.json"), str(tmp_path / "r.json")]


def test_torchrun_sets_the_thread_count_the_worker_would(tmp_path, monkeypatch):
    # One rule (harness.run.launchers.ranks.threads_per_rank): each rank's share of the CPUs its affinity allows,
    # not of every CPU of the host; torchrun's OMP_NUM_THREADS (which the worker keeps) is that same value.
    from harness.run import worker

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    for var in worker.THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    for threads, want in ((None, 3), (5, 5)):
        c = case(devices=2, threads=threads)
        _, env = get_launcher("torchrun").command(c, tmp_path / "case.json", tmp_path / "result.json", tmp_path)
        got, record = worker._same_threads(c, 2)
        assert env["OMP_NUM_THREADS"] == str(got.settings.threads) == str(want), (threads, env, record)
        assert record["affinity_cpus"] == 6
        for var in worker.THREAD_VARIABLES:
            monkeypatch.delenv(var, raising=False)


def test_shards_are_disjoint_whole_groups_of_equal_size():
    order = np.repeat(np.random.default_rng(0).permutation(40), 3)[:100]  # 33 whole groups and one copy
    shards = [shard_order(order, 3, r, 4) for r in range(4)]
    assert {len(s) for s in shards} == {24}  # 33 // 4 = 8 groups each
    for s in shards:
        g = s.reshape(-1, 3)
        assert (g == g[:, :1]).all()
    assert len(set().union(*(set(s.reshape(-1, 3)[:, 0]) for s in shards))) == 32
    assert shard_order(order, 3, 0, 1) is order


def _rank_result(status="ok", ips=100.0, ms=80.0, sha="abc", reason=None):
    return {"status": status, "reason": reason, "env": {"framework": "PyTorch"},
            "metrics": {"train": {"images_per_s": ips, "ms_per_step": {"mean": ms}, "timed_steps": 3},
                        "weights_sha256": sha},
            "samples": {"train_step_s": [ms / 1e3] * 3}}


def test_merge_sums_throughput_takes_the_slowest_rank_and_names_a_failed_one(tmp_path):
    c = case(devices=2, batch_size=16)
    result = tmp_path / "result.json"
    rank_result_file(result, 0).write_text(json.dumps(_rank_result(ips=200.0, ms=80.0)))
    rank_result_file(result, 1).write_text(json.dumps(_rank_result(ips=180.0, ms=90.0)))
    m = merge_ranks(c, result, tmp_path)
    assert m["status"] == "ok" and m["metrics"]["train"]["images_per_s"] == 380.0
    assert m["metrics"]["train"]["slowest_rank"] == 1 and m["metrics"]["train"]["ms_per_step"]["mean"] == 90.0
    assert m["metrics"]["train"]["global_batch"] == 32 and m["metrics"]["world_size"] == 2
    assert [r["rank"] for r in m["metrics"]["ranks"]] == [0, 1]
    (tmp_path / "ranks" / "1").mkdir(parents=True)
    (tmp_path / "ranks" / "1" / "stdout.log").write_text("step 1\nstep 2\nKilled\n")
    rank_result_file(result, 1).write_text(json.dumps({**_rank_result(), "status": "running"}))
    m = merge_ranks(c, result, tmp_path)
    assert m["status"] == "failed" and m["reason"] == "rank 1: no result: the process died"
    assert m["rank_log_tail"].endswith("Killed")


SUITE = """
models: [gluon_resnet50_v1b]
backends: [{backend}]
devices: [cpu]
settings: {{width: 0.25, image_size: 32, batch_size: 8, num_classes: 10, warmup: 2, steps: {steps}, devices: 2,
           threads: 1, data: tiny, lr: 0.1, timeout: 300}}
"""


def _suite(tmp_path, backend, steps):
    p = tmp_path / "dp.yaml"
    p.write_text(SUITE.format(backend=backend, steps=steps))
    return load_suite(p)


#: The installed backends that train and name a multi-device launcher (harness_backend_info()["launcher"]).
BACKENDS = params_where(lambda info: bool(info.get("launcher")) and "train" in scenarios_of(info))


@pytest.mark.slow
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "mindspore"])
def test_two_cpu_workers_train_with_identical_parameters(backend, tmp_path):
    """(msrun's two ranks training in step are checked under Slurm, where the same msrun command runs through srun:
    tests/test_slurm.py::test_torchrun_across_two_nodes_and_msrun_on_two_devices_merge_their_ranks.)"""
    run_dir = run_suite(_suite(tmp_path, backend, 6), tmp_path / "results", run_id="r", quiet=True)
    (rec,) = read_records(run_dir / "results.jsonl")
    assert rec["status"] == "ok", (rec["reason"], rec.get("log_tail"))
    ranks = rec["metrics"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["status"] == "ok" for r in ranks)
    assert ranks[0]["params_sha256"] and ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    assert set(rec["samples"]["train_step_s_by_rank"]) == {"0", "1"}
    assert rec["metrics"]["train"]["images_per_s"] == pytest.approx(sum(r["images_per_s"] for r in ranks))
    assert rec["metrics"]["eval"]["images"] == 100  # rank 0 evaluates the whole eval set


def _processes_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _rank_pid(marker: str, rank: int) -> int | None:
    for pid in _processes_mentioning(marker):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env or f"RANK_ID={rank}".encode() in env:
            return pid
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the worker processes")
@pytest.mark.parametrize("backend", BACKENDS)
def test_killing_one_worker_fails_the_case_and_leaves_no_process(backend, tmp_path):
    suite = _suite(tmp_path, backend, 2000)
    done: dict[str, Path] = {}
    thread = threading.Thread(target=lambda: done.setdefault("run", run_suite(
        suite, tmp_path / "results", run_id="r", quiet=True)))
    thread.start()
    marker = str(tmp_path / "results")  # the case file path is on every worker's command line
    deadline = time.monotonic() + 240
    pid = None
    while pid is None and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.5)
        pid = _rank_pid(marker, 1)
        progress = list((tmp_path / "results").rglob("result.rank1.json"))
        if pid is not None and not progress:  # wait until rank 1 is past setup and training
            pid = None
    assert pid is not None, "rank 1 never started"
    time.sleep(2.0)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    (rec,) = read_records(done["run"] / "results.jsonl")
    assert rec["status"] == "failed" and rec["reason"].startswith("rank 1"), rec["reason"]
    assert rec["failed_rank"] == 1
    time.sleep(1.0)
    assert _processes_mentioning(marker) == []


def test_torchrun_root_cause_names_the_rank_that_failed_first(tmp_path):
    from harness.run.launchers.ranks import root_cause_rank

    log = ("Failures:\n[1]:\n  rank      : 0 (local_rank: 0)\n  exitcode  : 1\n"
           "Root Cause (first observed failure):\n[0]:\n  time      : 2026\n  rank      : 1 (local_rank: 1)\n"
           "  exitcode  : -9 (pid: 5679)  (SIGKILL)\n")
    assert root_cause_rank(log) == 1 and root_cause_rank("no summary") is None
    c = case(devices=2)
    result = tmp_path / "result.json"
    for r in (0, 1):  # both ranks died without a result: the launcher's summary decides
        rank_result_file(result, r).write_text(json.dumps({**_rank_result(), "status": "running"}))
    (tmp_path / "case.log").write_text(log)
    assert merge_ranks(c, result, tmp_path)["reason"].startswith("rank 1: ")
    # msrun names the worker by pid
    msrun = "[ERROR] ME(1:2,MainProcess):... Worker process 4242 exit with exception. Error code: -9.\n"
    assert root_cause_rank(msrun, {4241: 0, 4242: 1}) == 1 and root_cause_rank(msrun) is None
    for r in (0, 1):
        rank_result_file(result, r).write_text(json.dumps({**_rank_result(), "status": "running", "pid": 4241 + r}))
    (tmp_path / "case.log").write_text(msrun)
    assert merge_ranks(c, result, tmp_path)["reason"].startswith("rank 1: ")


def test_progress_writes_only_to_the_pipe_the_runner_opened(monkeypatch):
    """A launcher's worker inherits the fd number but not the pipe; the number may then name a data-loader queue,
    which a progress line would corrupt (a hang seen in CI)."""
    from harness.run.launchers.process import Progress as _Progress

    read_fd, write_fd = os.pipe()
    other_r, other_w = os.pipe()
    try:
        monkeypatch.setenv("HARNESS_PROGRESS_FD", str(write_fd))
        monkeypatch.setenv("HARNESS_PROGRESS_INO", str(os.fstat(write_fd).st_ino))
        _Progress()("train", 1, 2, force=True)
        assert json.loads(os.read(read_fd, 1000))["step"] == 1
        monkeypatch.setenv("HARNESS_PROGRESS_FD", str(other_w))  # same number, another file
        progress = _Progress()
        assert progress.fd is None
        progress("train", 2, 2, force=True)
        os.set_blocking(other_r, False)
        with pytest.raises(BlockingIOError):
            os.read(other_r, 1000)
    finally:
        for fd in (read_fd, write_fd, other_r, other_w):
            os.close(fd)
