"""Timing statistics, the JSON Lines store and the markdown report."""
from __future__ import annotations

import json
import math
import re
import statistics

import numpy as np
import pytest

from harness.measure.steps import summarize, throughput
from harness.results.frame import records_frame
from harness.results.records import (
    SCHEMA,
    append_record,
    find_result_files,
    read_records,
)
from harness.results.report import render_markdown


def test_summarize_matches_definitions():
    samples = [0.010, 0.012, 0.011, 0.050, 0.013, 0.009, 0.011]
    s = summarize(samples)
    ms = [x * 1000 for x in samples]
    assert s["count"] == 7
    assert s["mean"] == pytest.approx(statistics.fmean(ms))
    assert s["p50"] == pytest.approx(statistics.median(ms))
    assert s["stdev"] == pytest.approx(statistics.stdev(ms))
    assert s["p90"] == pytest.approx(float(np.percentile(ms, 90)))
    assert s["p99"] <= s["max"] == pytest.approx(50.0)
    assert summarize([0.5])["stdev"] == 0.0 and summarize([]) == {"count": 0}


def test_throughput_is_images_over_timed_seconds():
    assert throughput(32, [0.5, 0.25, 0.25]) == pytest.approx(96.0)
    assert math.isnan(throughput(32, []))


def _record(case="c", backend="torch", device="cpu", status="ok", ips=100.0, top1=50.0, data="synthetic",
            variant=None, **kw):
    return {"schema": SCHEMA, "kind": "measured", "run_id": "r", "case": case, "status": status,
            "reason": kw.get("reason"),
            "config": {"model": "gluon_resnet50_v1b", "backend": backend, "device": device,
                       "settings": {"batch_size": 8, "data": data}, "variant": variant or {}},
            "metrics": {} if status != "ok" else {
                "train": {"images_per_s": ips, "ms_per_step": {"mean": 80.0, "p50": 79.0, "p90": 90.0,
                                                               "p99": 99.0, "stdev": 3.0},
                          "first_step_s": 1.5, "timed_steps": 20, "loss_last": 0.7},
                "eval": {"top1": top1, "top5": 90.0, "images_per_s": 300.0},
                "memory": {"host_peak_bytes": 512 * 2**20, "device_peak_bytes": None}},
            "env": {"device_model": "Xeon"}}


def test_append_is_one_line_per_record_and_nan_becomes_null(tmp_path):
    f = tmp_path / "results.jsonl"
    append_record(f, _record(ips=float("nan")))
    append_record(f, _record(case="d"))
    lines = f.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["metrics"]["train"]["images_per_s"] is None
    assert [r["case"] for r in read_records(f)] == ["c", "d"]


def test_torn_last_line_is_reported_and_the_rest_read(tmp_path, capsys):
    f = tmp_path / "results.jsonl"
    append_record(f, _record())
    with open(f, "a") as fh:
        fh.write('{"schema": "harness.result/1", "case": "tor')
    recs = read_records(f)
    assert len(recs) == 1
    assert f"{f}:2: torn or invalid record skipped" in capsys.readouterr().err


def test_find_result_files(tmp_path):
    (tmp_path / "a" / "r1").mkdir(parents=True)
    append_record(tmp_path / "a" / "r1" / "results.jsonl", _record())
    assert find_result_files([str(tmp_path / "a")]) == [tmp_path / "a" / "r1" / "results.jsonl"]
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match="no such file or folder"):
        find_result_files([str(tmp_path / "missing")])


def test_report_puts_backends_and_devices_side_by_side():
    recs = [_record("a", "torch", "cpu", ips=123.4, data="tiny"), _record("b", "mindspore", "cpu", ips=99.9),
            _record("c", "torch", "gpu", status="skipped", reason="gpu: no CUDA device")]
    md = render_markdown(recs)
    header = next(line for line in md.splitlines() if "torch / cpu" in line)
    assert "mindspore / cpu" in header
    row = next(line for line in md.splitlines() if line.startswith("| train images/s"))
    assert "123.4" in row and "99.9" in row
    assert "| top-1 (%)" in md
    assert "gpu: no CUDA device" in md and "skipped" in md


def test_report_hides_accuracy_of_synthetic_data_and_labels_varying_settings():
    # the matrix values come from the case's variant, never from its name
    recs = [_record("case-1", data="synthetic", top1=7.0, variant={"data": "synthetic"}),
            _record("case-2", data="tiny", top1=97.0, variant={"data": "tiny"}),
            _record("same-label", data="tiny", top1=55.0), _record("same-label-2", data="tiny", top1=56.0)]
    md = render_markdown(recs)
    assert "data=synthetic" in md and "data=tiny" in md
    top1 = next(line for line in md.splitlines() if line.startswith("| top-1"))
    assert "97.00" in top1 and "| 7.00" not in top1 and " 7.00 " not in top1
    assert "55.50 [49.15, 61.85]" in top1  # one configuration measured twice: the mean with its 95% interval


def test_frame_has_one_row_per_record():
    df = records_frame([_record(), _record("x", status="failed", reason="boom")])
    assert list(df["status"]) == ["ok", "failed"] and df.loc[0, "train_images_per_s"] == 100.0


def test_backend_ratio_table():
    tiny = {"data": "tiny"}
    recs = [_record("a", "torch", "cpu", ips=100.0, data="tiny", variant=tiny),
            _record("b", "mindspore", "cpu", ips=150.0, data="tiny", variant=tiny),
            _record("c", "torch", "gpu", ips=900.0, data="tiny", variant=tiny)]
    md = render_markdown(recs)
    assert "## Backends side by side" in md
    row = next(line for line in md.splitlines() if "mindspore / torch" in line)
    assert "| cpu" in row and "data=tiny" in row and "150.0 / 100.0 = 1.50x" in row
    assert sum("mindspore / torch" in line for line in md.splitlines()) == 1  # no gpu pair: no mindspore gpu run
    assert "## Backends side by side" not in render_markdown(recs[:1] + recs[2:])


def test_report_says_which_optimizer_and_recipe_each_column_ran():
    ms = _record(case="a", backend="mindspore")
    ms["config"]["settings"].update(optimizer="thor", recipe="multigrain_thor")
    tc = _record(case="b", backend="torch")
    tc["config"]["settings"].update(optimizer="sgd", recipe="multigrain_sgd")
    row = next(line for line in render_markdown([ms, tc]).splitlines() if line.startswith("| optimizer (recipe)"))
    assert "thor (multigrain_thor)" in row and "sgd (multigrain_sgd)" in row


def _runs(backend, ips_values, seeds=(0,), variant=None, unstable=None):
    out = []
    for seed in seeds:
        for rep, ips in enumerate(ips_values):
            r = _record(f"gluon_resnet50_v1b-{backend}-cpu-seed={seed}", backend, "cpu", ips=ips, data="tiny",
                        top1=60.0 + 5 * seed + rep, variant={"seed": seed, **(variant or {})})
            r["config"]["settings"]["seed"] = seed
            r.update(repeat=rep, repeats=len(ips_values))
            if unstable:
                r["noise"] = {"unstable": True, "reasons": [unstable]}
            out.append(r)
    return out


def test_every_backend_ratio_carries_its_confidence_interval():
    md = render_markdown(_runs("torch", [100.0, 102.0, 98.0]) + _runs("mindspore", [81.0, 80.0, 82.5]))
    row = next(line for line in md.splitlines() if "mindspore / torch" in line)
    from scipy import stats as st

    ci = st.ttest_ind(np.log([81.0, 80.0, 82.5]), np.log([100.0, 102.0, 98.0]), equal_var=False).confidence_interval()
    geo = [float(np.exp(np.log(v).mean())) for v in ([81.0, 80.0, 82.5], [100.0, 102.0, 98.0])]  # geometric means
    assert f"{geo[0]:.1f} / {geo[1]:.1f} = {geo[0] / geo[1]:.2f}x [{math.exp(ci.low):.2f}, {math.exp(ci.high):.2f}]" \
        in row and "| 3 / 3 " in row
    md = render_markdown(_runs("torch", [100.0, 120.0, 85.0]) + _runs("mindspore", [104.0, 90.0, 115.0]))
    row = next(line for line in md.splitlines() if "mindspore / torch" in line)
    assert "1.02x [" in row and ", no measurable difference" in row  # (104*90*115)^(1/3) / (100*120*85)^(1/3)
    md = render_markdown(_runs("torch", [100.0]) + _runs("mindspore", [125.0]))
    row = next(line for line in md.splitlines() if "mindspore / torch" in line)
    assert "125.0 / 100.0 = 1.25x (single run)" in row


def test_accuracy_over_seeds_is_a_mean_with_its_interval_and_unstable_runs_are_marked():
    recs = _runs("torch", [100.0, 101.0], seeds=(0, 1, 2, 3),
                 unstable="other processes used 1.02 cores while it ran (limit 0.25)")
    md = render_markdown(recs)
    top1 = next(line for line in md.splitlines() if line.startswith("| top-1"))
    assert "68.00 [" in top1  # 8 runs: seeds 0-3 (60, 65, 70, 75) x repetitions (+0, +1): mean 68.0
    assert re.search(r"\| runs \(geometric mean \[95% CI\]\) +\| 8 ", md)
    assert "8 of 8: other processes used 1.02 cores" in md and "## Unstable measurements" in md


def test_report_marks_input_bound_training_and_shows_the_data_ceiling():
    train = _record("t", "torch", data="tiny", ips=40.0)
    train["config"]["settings"].update(scenario="train", workers=2)
    train["metrics"]["train"]["input"] = {"wait_ms_mean": 60.0, "step_ms_mean": 100.0, "wait_share": 0.6,
                                          "input_bound": True, "limit": 0.2}
    feed = _record("d", "torch", data="tiny", variant={"scenario": "data"})
    feed["config"]["settings"].update(scenario="data", workers=2)
    feed["metrics"] = {"input_pipeline": {
        "per_image": {"images": 64, "decode_ms": 1.0, "augment_ms": 2.0, "one_worker_images_per_s": 333.0},
        "pipelines": [{"pipeline": "backend", "workers": 2, "images_per_s": 250.0},
                      {"pipeline": "core", "workers": 2, "images_per_s": 300.0},
                      {"pipeline": "backend", "workers": 4, "images_per_s": 400.0}]}}
    md = render_markdown([train, feed])
    row = next(line for line in md.splitlines() if line.startswith("| INPUT-BOUND"))
    assert "1 of 1: waiting for data took 60% of a step (limit 20%)" in row
    wait = next(line for line in md.splitlines() if line.startswith("| waiting for data (% of step)"))
    assert "| 60 " in wait
    alone = next(line for line in md.splitlines() if line.startswith("| data pipeline images/s (alone)"))
    assert "250.0" in alone and "400.0" not in alone  # at the case's worker count, not the best one
    matrix = md.split("## Comparison matrix", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in matrix.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert "data ceiling images/s" in header and len(rows) == 3  # the data case is no row of its own
    assert dict(zip(header, (c.strip() for c in rows[2].strip("|").split("|"))))["data ceiling images/s"] == "250.0"

    del train["metrics"]["train"]["input"]
    plain = render_markdown([train])
    assert "INPUT-BOUND" not in plain and "data ceiling images/s" not in plain and "data pipeline images/s" not in plain


def test_report_says_where_each_backend_ran_and_what_the_cpu_offers():
    a = _record("a", backend="torch")
    b = _record("b", backend="mindspore")
    a["env"].update(framework="PyTorch", framework_version="2.13.0", cpu="Xeon 8480", cpu_bf16="amx_bf16")
    b["env"].update(framework="MindSpore", framework_version="2.10.0", cpu="Xeon 8480", cpu_bf16="amx_bf16",
                    onednn_max_cpu_isa="AVX2")
    md = render_markdown([a, b])
    section = md.split("## Where it ran", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "backend" not in line]
    assert len(rows) == 2
    assert re.search(r"\| mindspore +\| MindSpore +\| 2\.10\.0 .*\| Xeon 8480 +\| amx_bf16 +\| AVX2 +\|", md)
    assert re.search(r"\| torch +\| PyTorch +\| 2\.13\.0 .*\| amx_bf16 +\| - +\|", md)
