"""`harness export mllog`: a real run's records as MLPerf log events, read back with mlperf-logging's own parser."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from mlperf_logging.compliance_checker.mlp_parser import parse_file
from mlperf_logging.mllog import constants as c

from harness.config import case_slug
from harness.results.records import read_records
from harness.run.runner import run_suite
from harness.run.suite import load_suite

SUITE = """
name: ml
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 4, epochs: 2, warmup: 1, lr: 0.05, weight_decay: 0.0001, timeout: 60, data: tiny}
matrix: {seed: [0, 1]}
overrides:
  - match: {seed: 1}
    settings: {target_top1: 40, eval_every_epochs: 1}
"""


def _ms(iso: str, plus: float = 0.0) -> float:
    return round((dt.datetime.fromisoformat(iso).timestamp() + plus) * 1000)


def _events(path):
    lines, errors = parse_file(str(path), ruleset="6.0.0")
    assert errors == []
    return lines


def test_export_writes_each_case_as_mllog_events_with_the_measured_times(tmp_path, fake_backend, cli):
    (tmp_path / "ml.yaml").write_text(SUITE)
    run_dir = run_suite(load_suite(tmp_path / "ml.yaml"), tmp_path / "results", run_id="r1", quiet=True,
                        stream=io.StringIO())
    records = {r["case"]: r for r in read_records(run_dir / "results.jsonl")}
    rc, _, err = cli("export", "mllog", str(run_dir), "-o", str(tmp_path / "out"))
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{case_slug(c)}.log" for c in records)

    for case, rec in records.items():
        lines = _events(tmp_path / "out" / f"{case_slug(case)}.log")
        by = {}
        for line in lines:
            by.setdefault(line.key, []).append(line)
        s, m, env = rec["config"]["settings"], rec["metrics"], rec["env"]
        start = _ms(rec["started_at"])
        assert lines[0].key == c.RUN_START and lines[0].timestamp == start
        (stop,) = by[c.RUN_STOP]
        assert lines[-1] is stop and stop.timestamp == _ms(rec["started_at"], rec["duration_s"])
        assert stop.value["metadata"]["status"] == c.SUCCESS
        assert by[c.SUBMISSION_BENCHMARK][0].value["value"] == "gluon_resnet50_v1b"
        platform = by[c.SUBMISSION_PLATFORM][0].value
        assert platform["value"] == env["device_model"]
        for key in ("cpu", "framework", "framework_version", "harness_version", "git_commit", "device"):
            assert platform["metadata"][key] == env[key]
        assert by[c.GLOBAL_BATCH_SIZE][0].value["value"] == 4
        assert by[c.OPT_BASE_LR][0].value["value"] == 0.05
        assert by[c.OPT_WEIGHT_DECAY][0].value["value"] == 0.0001
        assert by[c.SEED][0].value["value"] == s["seed"]
        assert by[c.OPT_NAME][0].value["value"] == s["optimizer"]
        assert by["throughput"][0].value["value"] == pytest.approx(m["train"]["images_per_s"])
        assert by["throughput"][0].value["metadata"]["unit"] == "images/s"
        # epochs: as many as trained, each start before its stop, in order, within the run
        epochs = round(m["train"]["epochs"])
        starts, stops = by[c.EPOCH_START], by[c.EPOCH_STOP]
        assert [e.value["metadata"]["epoch_num"] for e in starts] == list(range(epochs))
        assert [e.value["metadata"]["epoch_num"] for e in stops] == list(range(epochs))
        times = [t.timestamp for pair in zip(starts, stops) for t in pair]
        assert times == sorted(times) and start <= times[0] and times[-1] <= stop.timestamp
        accuracy = by[c.EVAL_ACCURACY]
        if s["target_top1"] is None:
            assert epochs == 2
            (acc,) = accuracy
            assert acc.value["value"] == m["eval"]["top1"] / 100
            # the epoch its last epoch_stop names, and top-5 a fraction like top-1
            assert acc.value["metadata"]["epoch_num"] == stops[-1].value["metadata"]["epoch_num"] == 1
            assert acc.value["metadata"]["top5"] == m["eval"]["top5"] / 100
        else:  # time to accuracy: each evaluation at the time it was measured, from the start of training
            tta = m["time_to_accuracy"]
            assert [a.value["value"] for a in accuracy] == [e["top1"] / 100 for e in tta["evaluations"]]
            assert [a.value["metadata"]["epoch_num"] for a in accuracy] == [e["epoch"] for e in tta["evaluations"]]
            assert [a.timestamp for a in accuracy] == [_ms(rec["started_at"], tta["init_s"] + e["elapsed_s"])
                                                       for e in tta["evaluations"]]
            assert by[c.INIT_STOP][0].timestamp == _ms(rec["started_at"], tta["init_s"])


def test_a_failed_case_is_aborted_and_bad_input_is_one_line(tmp_path, fake_backend, monkeypatch, cli):
    monkeypatch.setenv("HARNESS_FAKE_PLAN", '{"1": "raise"}')
    (tmp_path / "ml.yaml").write_text(SUITE)
    run_dir = run_suite(load_suite(tmp_path / "ml.yaml"), tmp_path / "results", run_id="r1", quiet=True,
                        stream=io.StringIO())
    rc, _, err = cli("export", "mllog", str(run_dir))
    assert rc == 0, err
    failed = next(r for r in read_records(run_dir / "results.jsonl") if r["status"] == "failed")
    (stop,) = [e for e in _events(run_dir / "mllog" / f"{case_slug(failed['case'])}.log") if e.key == c.RUN_STOP]
    assert stop.value["metadata"]["status"] == c.ABORTED and stop.value["metadata"]["reason"] == failed["reason"]

    for path, why in ((tmp_path / "nowhere", "no such run folder"), (tmp_path, "not a run folder")):
        rc, _, err = cli("export", "mllog", str(path))
        assert rc == 2 and err.startswith("harness: error: ") and why in err and len(err.strip().splitlines()) == 1
