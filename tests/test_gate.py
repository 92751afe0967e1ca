"""The gate on every metric: inference latency (p50, p99 over repetitions), eval and data runs, memory, hosts, A/B
comparisons per image, subset runs, named baselines, and the figures shown with their intervals."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.results.compare import compare_runs
from harness.results.records import SCHEMA


def record(case: str = "c", samples: dict | None = None, settings: dict | None = None, metrics: dict | None = None,
           env: dict | None = None, repeat: int = 0, run_id: str = "r", **extra) -> dict:
    config = {"name": case, "model": "gluon_resnet50_v1b", "backend": "fake", "device": "cpu",
              "settings": {"data": "synthetic", "batch_size": 16, **(settings or {})}}
    return {"schema": SCHEMA, "kind": "measured", "suite": "s", "run_id": run_id, "case": case, "status": "ok",
            "repeat": repeat, "config": config,
            "metrics": metrics or {}, "samples": samples or {}, "env": env or {}, **extra}


def steps(seed: int, scale: float, n: int = 40, base: float = 0.02, noise: float = 0.03) -> list[float]:
    rng = np.random.default_rng(seed)
    return (scale * base * (1 + noise * np.abs(rng.standard_normal(n)))).tolist()


def by_metric(rows) -> dict:
    return {r.metric: r for r in rows if r.metric}


def write(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


# --- every scenario's metrics ---------------------------------------------------------------------------------------

def _inference_runs(scale: float, seed: int) -> list[dict]:
    return [record(samples={"inference_b1_s": steps(seed + k, scale * (1 + 0.02 * k), base=0.005),
                            "inference_b8_s": steps(seed + 50 + k, 1.0, base=0.03)},
                   settings={"scenario": "inference", "inference_batch_sizes": [1, 8]}, repeat=k, run_id=f"r{seed}")
            for k in range(3)]


def test_an_inference_slowdown_of_30_percent_is_caught_at_p50_and_at_p99_over_repetitions():
    base, same, slow = _inference_runs(1.0, 0), _inference_runs(1.0, 100), _inference_runs(1.3, 200)
    judged = by_metric(compare_runs(base, slow))
    assert judged["latency_p50"].verdict == "regression" and judged["latency_p50"].basis == "runs (3 vs 3)"
    assert judged["latency_p99"].verdict == "regression", judged["latency_p99"]
    assert judged["latency_p99"].unit == "ms" and judged["latency_p99"].statistic.startswith("geometric mean")
    assert judged["inference_b8"].verdict == "ok"  # batch 8 was not slowed
    assert {r.verdict for r in compare_runs(base, same)} <= {"ok"}
    single = by_metric(compare_runs(base[:1], slow[:1]))  # one run each: p50 from the steps, p99 not from one tail
    assert single["latency_p50"].verdict == "regression" and single["latency_p50"].basis.startswith("steps")
    assert single["latency_p99"].verdict == "not judged" and "repetitions" in single["latency_p99"].why


@pytest.mark.parametrize("scenario, key, metric", [("eval", "eval_step_s", "eval"),
                                                   ("data", "data_backend_w2_batch_s", "data_w2")])
def test_an_eval_only_and_a_data_only_run_are_judged(scenario, key, metric):
    def run(scale, seed):
        return [record(samples={key: steps(seed, scale)}, settings={"scenario": scenario, "workers": 2})]
    slower = by_metric(compare_runs(run(1.0, 1), run(1.3, 2)))
    assert set(slower) == {metric} and slower[metric].verdict == "regression"
    assert by_metric(compare_runs(run(1.0, 1), run(1.0, 3)))[metric].verdict == "ok"


def test_memory_growth_beyond_the_tolerance_is_flagged():
    def run(host_mb):
        return [record(samples={"train_step_s": steps(1, 1.0)},
                       metrics={"memory": {"host_peak_bytes": host_mb * 1e6, "device_peak_bytes": None}})]
    grown = by_metric(compare_runs(run(1000), run(1250)))["memory_host"]
    assert grown.verdict == "regression" and "grew by 25.0% (tolerance 10%)" in grown.why
    assert grown.basis == "tolerance" and grown.unit == "MB"
    assert by_metric(compare_runs(run(1000), run(1050)))["memory_host"].verdict == "ok"
    assert by_metric(compare_runs(run(1000), run(1250), memory_tolerance=0.3))["memory_host"].verdict == "ok"
    assert "memory_device" not in by_metric(compare_runs(run(1000), run(1000)))  # not measured (CPU)


def test_energy_and_time_to_accuracy_are_judged_over_repetitions_and_top1_by_its_tolerance():
    def runs(joules, top1, tta):
        return [record(samples={"train_step_s": steps(k, 1.0)}, settings={"data": "tiny"}, repeat=k,
                       metrics={"train": {"energy": {"j_per_image": joules * (1 + 0.01 * k)}}, "eval": {"top1": top1},
                                "time_to_accuracy": {"reached": True, "time_s": tta * (1 - 0.01 * k)}})
                for k in range(3)]
    judged = by_metric(compare_runs(runs(2.0, 70.0, 100.0), runs(2.6, 67.5, 101.0)))
    assert judged["energy"].verdict == "regression" and judged["energy"].unit == "J/image"
    assert judged["time_to_accuracy"].verdict == "ok"
    assert judged["top1"].verdict == "regression" and "top-1 fell 2.50 points" in judged["top1"].why
    synthetic = [{**r, "config": {**r["config"], "settings": {"data": "synthetic"}}} for r in runs(2.0, 70.0, 100.0)]
    assert "top1" not in by_metric(compare_runs(synthetic, synthetic))  # random labels: no accuracy to gate


def test_the_exported_model_is_held_to_the_baseline_and_to_its_own_framework():
    def run(export, own):
        return [record(settings={"scenario": "inference", "data": "tiny"}, samples={"inference_b1_s": steps(1, 1.0)},
                       metrics={"inference": {"accuracy": {"top1": export, "framework_top1": own}}})]
    assert by_metric(compare_runs(run(70.0, 70.0), run(69.5, 70.0)))["export_top1"].verdict == "ok"
    fell = by_metric(compare_runs(run(70.0, 70.0), run(67.0, 67.5)))["export_top1"]
    assert fell.verdict == "regression" and "top-1 fell 3.00 points" in fell.why
    behind = by_metric(compare_runs(run(60.0, 70.0), run(60.0, 70.0)))["export_top1"]  # broken in both runs alike
    assert behind.verdict == "regression" and "10.00 points below the framework's own" in behind.why


def test_top1_over_seeds_is_judged_by_the_equivalence_rule_and_the_cases_defer_to_it():
    def run(mean, run_id):
        out = []
        for seed, d in enumerate((-0.3, 0.1, 0.2, -0.1)):
            r = record(f"c-seed={seed}", {"train_step_s": steps(seed, 1.0)}, settings={"data": "tiny", "seed": seed},
                       metrics={"eval": {"top1": mean + d}}, run_id=run_id)
            r["config"]["variant"] = {"seed": seed}
            out.append(r)
        return out
    same = compare_runs(run(70.0, "a"), run(70.1, "b"))
    (seeds,) = [r for r in same if r.metric == "top1_seeds"]
    assert seeds.verdict == "ok" and seeds.basis == "equivalence" and "equivalent" in seeds.why
    assert {r.verdict for r in same if r.metric == "top1"} == {"not judged"}  # one rule: over the seeds
    worse = compare_runs(run(70.0, "a"), run(66.0, "b"))
    (seeds,) = [r for r in worse if r.metric == "top1_seeds"]
    assert seeds.verdict == "regression" and seeds.change == pytest.approx(-4.0)
    assert [r.metric for r in compare_runs(run(70.0, "a"), run(66.0, "b"), metrics=["top1_seeds"])] == ["top1_seeds"]


def test_metrics_chooses_what_is_gated_and_an_unknown_one_is_refused(tmp_path, capsys):
    base, slow = _inference_runs(1.0, 0), _inference_runs(1.3, 200)
    rows = compare_runs(base, slow, metrics=["inference_b8"])
    assert [r.metric for r in rows] == ["inference_b8"] and rows[0].verdict == "ok"
    with pytest.raises(HarnessError, match=r"--metrics: unknown metric 'latency_p95'; did you mean 'latency_p99'"):
        compare_runs(base, slow, metrics=["latency_p95"])
    a, b = write(tmp_path / "a", base[:1]), write(tmp_path / "b", base[:1])
    assert main(["compare", str(a), str(b), "--metrics", "latency_p99"]) == 2
    assert "--metrics latency_p99: no case could be judged on it" in capsys.readouterr().err


# --- hosts and baselines --------------------------------------------------------------------------------------------

def test_a_run_from_another_cpu_model_is_refused_with_one_line(tmp_path, capsys):
    env = {"cpu": "AMD EPYC 7B13", "framework_version": "2.13.0"}
    a = write(tmp_path / "a", [record(samples={"train_step_s": steps(1, 1.0)}, env=env)])
    b = write(tmp_path / "b", [record(samples={"train_step_s": steps(2, 1.0)}, env={**env, "cpu": "Intel Xeon 8480"})])
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("harness: error: case c: cpu: 'AMD EPYC 7B13' in the baseline, 'Intel Xeon 8480' in the current "
                   "run: measured on different hosts, so a change may be the machine's (--allow-different-host to "
                   "compare them anyway)")
    assert main(["compare", str(a), str(b), "--allow-different-host"]) == 0
    assert "**Measured on different hosts** (--allow-different-host): case c: cpu:" in capsys.readouterr().out


def test_a_named_baseline_is_saved_explicitly_and_found_by_compare(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_BASELINES", str(tmp_path / "store"))
    run = write(tmp_path / "run", [record(samples={"train_step_s": steps(1, 1.0)})])
    slow = write(tmp_path / "slow", [record(samples={"train_step_s": steps(2, 1.3)})])
    assert main(["baseline", "save", str(run), "--name", "main"]) == 0
    assert "baseline 'main' saved" in capsys.readouterr().out
    meta = json.loads((tmp_path / "store" / "main" / "baseline.json").read_text())
    assert meta["name"] == "main" and meta["records"] == 1 and "c" in meta["cases"]
    assert main(["baseline", "save", str(slow), "--name", "main"]) == 2  # refreshing is explicit
    assert "baseline 'main' exists (--replace to refresh it)" in capsys.readouterr().err
    assert main(["compare", "--baseline", "main", str(slow)]) == 1
    assert main(["compare", "--baseline", "main", str(run), str(slow)]) == 2  # a baseline named and one given
    assert "give BASELINE and CURRENT, or --baseline NAME and CURRENT" in capsys.readouterr().err
    assert main(["compare", "--baseline", "mian", str(slow)]) == 2
    assert "baseline 'mian': not in" in capsys.readouterr().err
    assert main(["baseline", "save", str(slow), "--name", "main", "--replace"]) == 0
    assert main(["compare", "--baseline", "main", str(slow)]) == 0


# --- A/B comparisons and subsets -------------------------------------------------------------------------------------

def test_batch_16_to_32_is_judged_per_image_and_every_difference_is_listed(tmp_path, capsys):
    # 16 images in 0.16 s (10 ms/image) against 32 in 0.30 s (9.4 ms/image): per step it would be +88% slower
    r16 = record(samples={"train_step_s": steps(1, 1.0, base=0.16)})
    r32 = record(samples={"train_step_s": steps(2, 1.0, base=0.30)}, settings={"batch_size": 32, "channels_last": True})
    b16, b32 = write(tmp_path / "b16", [r16]), write(tmp_path / "b32", [r32])
    (row,) = by_metric(compare_runs([r16], [r32], allow_different_settings=True)).values()
    assert row.unit == "ms/image" and row.change < 0 and row.verdict in ("ok", "improvement")
    assert row.baseline == pytest.approx(10.0 * np.median(steps(1, 1.0, base=0.16)) / 0.16, rel=1e-9)
    assert row.differences == ["settings.batch_size: 16 in the baseline, 32 in the current run",
                               "settings.channels_last: None in the baseline, True in the current run"]
    assert main(["compare", str(b16), str(b32), "--allow-different-settings"]) == 0
    out = capsys.readouterr().out
    assert "An A/B comparison: the settings differ by choice" in out
    assert "settings.batch_size: 16 in the baseline, 32 in the current run" in out and "ms/image" in out


def test_a_subset_run_leaves_the_other_cases_not_run(tmp_path, capsys):
    base = write(tmp_path / "base", [record(case, {"train_step_s": steps(i, 1.0)}) for i, case in
                                     enumerate(("a-torch", "b-torch", "a-mindspore"))])
    subset = write(tmp_path / "subset", [record("a-torch", {"train_step_s": steps(9, 1.0)}, selection=["a-*"]),
                                         record("a-mindspore", {"train_step_s": steps(8, 1.0)}, selection=["a-*"])])
    assert main(["compare", str(base), str(subset)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| b-torch +\| +\| not run +\|", out), out
    assert "the current run selected a-* (--only)" in out
    assert main(["compare", str(base), str(subset), "--only", "a-torch"]) == 0
    out = capsys.readouterr().out
    assert "a-mindspore" not in out and "of 1 case(s)" in out
    whole = write(tmp_path / "whole", [record("a-torch", {"train_step_s": steps(9, 1.0)})])
    assert main(["compare", str(base), str(whole)]) == 1  # a run of the whole suite that lost cases: missing


# --- what is printed: the figure beside its interval ----------------------------------------------------------------

_INTERVAL = re.compile(r"([+-]?\d+(?:\.\d+)?)(x|%)? \[([+-]?\d+(?:\.\d+)?)%?, ([+-]?\d+(?:\.\d+)?)%?\]")


def assert_intervals_hold_their_figures(text: str) -> int:
    found = 0
    for m in _INTERVAL.finditer(text):
        value, lo, hi = float(m.group(1)), float(m.group(3)), float(m.group(4))
        assert lo <= value <= hi, m.group(0)
        found += 1
    return found


def test_every_interval_in_a_report_and_a_verdict_holds_the_figure_it_is_printed_beside(tmp_path, capsys):
    from harness.results.html import render_html
    from harness.results.report import render_markdown

    rng = np.random.default_rng(4)
    records = []
    for backend, speed in (("torch", 100.0), ("mindspore", 77.0)):
        for k in range(3):  # skewed runs: a median would sit apart from the centre of a log-scale interval
            ips = speed * float(np.exp(rng.normal(0, 0.15))) * (1.4 if k == 2 else 1.0)
            r = record(f"m-{backend}", {"train_step_s": [16 / ips] * 10}, repeat=k,
                       metrics={"train": {"images_per_s": ips, "ms_per_step": {"p50": 1.6e5 / ips}}},
                       env={"framework": backend.capitalize(), "framework_version": "1.0"})
            r["config"]["backend"] = backend
            records.append(r)
    md = render_markdown(records)
    assert assert_intervals_hold_their_figures(md) >= 4
    assert re.search(r"\*\*The answer\.\*\* gluon_resnet50_v1b on cpu: (torch \(Torch 1\.0\) is \d\.\d\dx faster than "
                     r"mindspore \(Mindspore 1\.0\) \[\d\.\d\d, \d\.\d\d\]|no measurable difference between)", md), md
    assert "3 runs each" in md
    html = render_html(records)
    assert assert_intervals_hold_their_figures(re.sub(r"<[^>]+>", " ", html)) >= 4
    base = write(tmp_path / "a", records[:3])
    cur = write(tmp_path / "b", [{**r, "run_id": "r2"} for r in records[:3]])
    assert main(["compare", str(base), str(cur)]) == 0
    assert assert_intervals_hold_their_figures(capsys.readouterr().out) >= 1


def test_the_verdict_is_also_written_as_json(tmp_path):
    base, slow = _inference_runs(1.0, 0), _inference_runs(1.3, 200)
    a, b = write(tmp_path / "a", base), write(tmp_path / "b", slow)
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "v.json")]) == 1
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["schema"] == "harness.compare/1" and verdict["regression"] is True
    rows = {r["metric"]: r for r in verdict["rows"]}
    assert rows["latency_p50"]["verdict"] == "regression" and rows["latency_p50"]["p_value"] < 0.01
    assert rows["latency_p50"]["change_ci"][0] <= rows["latency_p50"]["change"] <= rows["latency_p50"]["change_ci"][1]
