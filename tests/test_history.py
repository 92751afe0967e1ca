"""History across runs: the SQLite index over real runs of the fake backend, and `harness history`."""
from __future__ import annotations

import io
import json
import sqlite3

import pytest

from harness.errors import HarnessError
from harness.results.history import DB_NAME, history_frame, open_index, refresh
from harness.results.records import read_records
from harness.run.runner import run_suite
from harness.run.suite import load_suite

SUITE = """
name: hist
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 4, steps: 3, warmup: 1, timeout: 60}
matrix: {seed: [0, 1]}
"""
CASES = ["gluon_resnet50_v1b-fake-cpu-seed=0", "gluon_resnet50_v1b-fake-cpu-seed=1"]


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


@pytest.fixture
def run(tmp_path, results, fake_backend):
    """Runs the small suite for real (the fake backend) as run ``run_id``; returns its records by case."""
    (tmp_path / "hist.yaml").write_text(SUITE)

    def run(run_id: str):
        run_dir = run_suite(load_suite(tmp_path / "hist.yaml"), results, run_id=run_id, quiet=True,
                            stream=io.StringIO())
        return {r["case"]: r for r in read_records(run_dir / "results.jsonl")}

    return run


def _rows(out: str, case: str) -> list[str]:
    """The table rows under ``## case``."""
    section = out.split(f"## {case}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "suite/run" not in line]


def test_history_lists_every_run_of_each_case_and_follows_new_runs(results, run, cli):
    r1, r2 = run("r1"), run("r2")
    rc, out, err = cli("history", "--results", str(results))
    assert rc == 0, err
    for case in CASES:
        rows = _rows(out, case)
        assert [("hist/r1" in row, "hist/r2" in row) for row in rows] == [(True, False), (False, True)]
        for row, rec in zip(rows, (r1[case], r2[case])):
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert f"{rec['metrics']['train']['images_per_s']:.1f}" in cells
            assert f"{rec['metrics']['eval']['top1']:.2f}" not in cells and "ok" in cells  # synthetic: no top-1
            assert rec["env"]["harness_version"] in cells
            assert f"{rec['env']['framework']} {rec['env']['framework_version']}" in cells
            assert rec["started_at"][:19].replace("T", " ") in cells

    df = history_frame(results)
    assert list(df["case"]) == [CASES[0], CASES[0], CASES[1], CASES[1]]
    assert list(df["run_id"]) == ["r1", "r2", "r1", "r2"]
    assert df["images_per_s"].tolist() == pytest.approx(
        [r[c]["metrics"]["train"]["images_per_s"] for c in CASES for r in (r1, r2)])
    assert df["git_commit"].tolist() == [r[c]["env"]["git_commit"] for c in CASES for r in (r1, r2)]

    db = results / DB_NAME
    assert db.is_file()
    db.unlink()  # the JSON Lines are the truth: a missing index is rebuilt from them
    again = history_frame(results)
    assert db.is_file()
    assert again.drop(columns="path").equals(df.drop(columns="path"))

    run("r3")  # a new run is indexed on its own; the others are not read again
    con = open_index(results)
    try:
        assert refresh(con, results) == {"read": 1, "dropped": 0, "unchanged": 2}
        assert refresh(con, results) == {"read": 0, "dropped": 0, "unchanged": 3}
    finally:
        con.close()
    rc, out, _ = cli("history", "*seed=1", "--results", str(results))
    assert rc == 0 and f"## {CASES[0]}" not in out
    assert ["hist/r3" in row for row in _rows(out, CASES[1])] == [False, False, True]


def test_a_changed_or_removed_run_is_read_again_and_a_bad_index_rebuilt(results, run):
    r1 = run("r1")
    history_frame(results)
    # a resumed run appends: the newest record of the case counts
    rec = dict(r1[CASES[0]], status="failed", reason="train: boom", metrics={})
    with open(results / "hist" / "r1" / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    df = history_frame(results).set_index("case")
    assert df.loc[CASES[0], "status"] == "failed" and df.loc[CASES[0], "reason"] == "train: boom"
    assert df.loc[CASES[1], "status"] == "ok"

    db = results / DB_NAME
    db.write_bytes(b"this is not a database" * 100)
    assert len(history_frame(results)) == 2
    assert sqlite3.connect(db).execute("SELECT count(*) FROM files").fetchone()[0] == 1
    db.unlink()
    foreign = sqlite3.connect(db)
    foreign.execute("CREATE TABLE files (x)")  # another tool's database under our name
    foreign.commit()
    foreign.close()
    assert len(history_frame(results)) == 2

    run("r2")
    assert set(history_frame(results)["run_id"]) == {"r1", "r2"}
    for f in (results / "hist" / "r1").iterdir():
        if f.is_file():
            f.unlink()
    assert set(history_frame(results)["run_id"]) == {"r2"}


def test_repetitions_show_their_interval(results, run, cli):
    r1 = run("r1")
    rep = results / "hist" / "rep"
    rep.mkdir()
    base = r1[CASES[0]]
    with open(rep / "results.jsonl", "w", encoding="utf-8") as f:
        for i, ips in enumerate((100.0, 110.0, 120.0)):
            train = dict(base["metrics"]["train"], images_per_s=ips)
            f.write(json.dumps({**base, "run_id": "rep", "repeat": i, "repeats": 3,
                                "metrics": {**base["metrics"], "train": train}}) + "\n")
    row = history_frame(results, CASES[0]).set_index("run_id").loc["rep"]
    geo = (100.0 * 110.0 * 120.0) ** (1 / 3)  # the geometric mean: the centre of the interval over the logs
    assert row["runs"] == 3 and row["images_per_s"] == pytest.approx(geo) and row["ci_low"] < 100.0
    assert row["ci_high"] > 120.0
    rc, out, _ = cli("history", CASES[0], "--results", str(results))
    assert rc == 0
    rep_row = next(r for r in _rows(out, CASES[0]) if "/rep" in r)
    assert f"{geo:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]" in rep_row


def test_bad_input_is_one_line(tmp_path, results, run, cli):
    rc, _, err = cli("history", "--results", str(tmp_path / "nowhere"))
    assert rc == 2 and err.strip() == f"harness: error: {tmp_path / 'nowhere'}: no such results folder"
    results.mkdir()
    rc, _, err = cli("history", "--results", str(results))
    assert rc == 2 and "no runs" in err and len(err.strip().splitlines()) == 1
    run("r1")
    rc, _, err = cli("history", "resnet*", "--results", str(results))
    assert rc == 2 and err.startswith("harness: error: no case matches 'resnet*'") and CASES[0] in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(HarnessError):
        history_frame(results, "[")


def test_an_inference_case_is_its_runtime_at_the_largest_batch_as_compare_judges_it(results):
    """History's images/s of a case is the measurement that represents it (harness.results.case_rules), the one
    compare times: for an inference case that also evaluated its weights in the framework, the runtime at its
    largest batch, not that evaluation (which came first in history's own order before)."""
    from harness.config import Case, Settings
    from harness.results.compare import compare_runs
    from harness.results.records import SCHEMA

    case = Case("inf", "gluon_resnet50_v1b", "fake", "cpu",
                Settings(scenario="inference", data="tiny", inference_batch_sizes=[1, 8]))
    rec = {"schema": SCHEMA, "kind": "measured", "suite": "s", "run_id": "r1", "case": "inf", "status": "ok",
           "config": case.to_dict(), "started_at": "2026-01-01T00:00:00+00:00",
           "metrics": {"eval": {"top1": 50.0, "images_per_s": 40.0},
                       "inference": {"throughput": [{"batch_size": 1, "images_per_s": 90.0},
                                                    {"batch_size": 8, "images_per_s": 300.0}]}},
           "samples": {"eval_step_s": [0.1] * 10, "inference_b1_s": [0.011] * 10, "inference_b8_s": [0.027] * 10},
           "env": {}}
    (results / "s" / "r1").mkdir(parents=True)
    (results / "s" / "r1" / "results.jsonl").write_text(json.dumps(rec) + "\n")
    row = history_frame(results).iloc[0]
    assert (row["images_per_s"], row["measure"]) == (300.0, "inference b8")
    judged = {r.metric: r for r in compare_runs([rec], [rec])}
    assert set(judged) == {"inference_b8", "latency_p50", "latency_p99", "top1"}  # not the framework's evaluation
    assert judged["inference_b8"].verdict == "ok" and row["measure"] == "inference b8"
