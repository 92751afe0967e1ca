"""harness compare: the Mann-Whitney U test by hand, and each exit status on synthetic records of known noise."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.results.compare import compare_runs
from harness.results.records import SCHEMA, read_records
from harness.results.significance import mann_whitney_greater


def test_u_and_p_by_hand_without_ties():
    # every current value beats every baseline value: U = 3 * 2 = 6; mean 3, variance 3*2*6/12 = 3
    u, p = mann_whitney_greater([3, 4, 5], [1, 2])
    assert u == 6
    z = (6 - 3 - 0.5) / math.sqrt(3)
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-12)  # 0.0745


def test_u_and_p_by_hand_with_ties():
    # pairs (1,1)=0.5, (1,2)=0, (2,1)=1, (2,2)=0.5 -> U = 2 = the mean; ties shrink the variance:
    # 2*2/12 * (5 - (2*(8-2)) / (4*3)) = 1/3 * 4 = 4/3
    u, p = mann_whitney_greater([1, 2], [1, 2])
    assert u == 2
    assert p == pytest.approx(0.5 * math.erfc((-0.5 / math.sqrt(4 / 3)) / math.sqrt(2)), rel=1e-12)
    assert p > 0.5


def test_a_large_clean_shift_is_significant_and_a_null_one_is_not():
    base = [0.100 + 0.001 * (i % 7) for i in range(30)]
    assert mann_whitney_greater([v * 1.3 for v in base], base)[1] < 1e-8
    assert mann_whitney_greater(base, base)[1] > 0.4


def train(rows):
    """The rows of the training-time metric."""
    return [r for r in rows if r.metric == "train"]


def _records(seed: int, scale: float) -> list[dict]:
    """Two cases' records as a run of the fake backend writes them, with step times drawn around 20 ms (3% noise,
    seeded) times ``scale``: the gate is judged on known data, not on this machine's timing."""
    rng = np.random.default_rng(seed)
    return [{"schema": SCHEMA, "kind": "measured", "suite": "fake", "run_id": f"r{seed}", "case": f"c-seed={s}",
             "status": "ok", "reason": None,
             "config": {"name": f"c-seed={s}", "model": "gluon_resnet50_v1b", "backend": "fake", "device": "cpu",
                        "settings": {"batch_size": 4, "steps": 20, "data": "tiny", "seed": s}},
             "metrics": {"eval": {"top1": 50.0 + s}},
             "samples": {"train_step_s": (scale * 0.020 * (1 + 0.03 * rng.standard_normal(20))).tolist()},
             "env": {}} for s in (0, 1)]


@pytest.fixture
def runs(tmp_path):
    out = {}
    for name, seed, scale in (("base", 0, 1.0), ("same", 1, 1.0), ("slow", 2, 1.3)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(seed, scale)))
        out[name] = folder
    return out


def test_exit_0_for_two_runs_of_the_same_code_and_1_for_a_30_percent_slowdown(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["same"])]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "within noise" in out
    assert main(["compare", str(runs["base"]), str(runs["slow"])]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION (2 regression(s), 0 unstable, of 2 case(s), 4 metric(s) judged)" in out
    assert re.search(r"worse by (2[5-9]|3[0-5])\.\d%", out)  # ~30%: 26 ms against 20 ms


def test_exit_1_for_an_accuracy_drop_and_for_a_failed_or_missing_case(runs, tmp_path, capsys):
    records = read_records(runs["same"] / "results.jsonl")
    assert all(r["metrics"]["eval"]["top1"] is not None for r in records)
    dropped = tmp_path / "dropped.jsonl"
    records[0]["metrics"]["eval"]["top1"] -= 5.0
    dropped.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["compare", str(runs["base"]), str(dropped)]) == 1
    assert "top-1 fell 5.00 points" in capsys.readouterr().out
    one = tmp_path / "one.jsonl"
    records[0]["metrics"]["eval"]["top1"] += 5.0
    records[1].update(status="failed", reason="train: diverged at step 4: loss is nan")
    one.write_text(json.dumps(records[1]) + "\n")
    assert main(["compare", str(runs["base"]), str(one)]) == 1
    out = capsys.readouterr().out
    assert "| missing" in out and "| failed" in out


def test_exit_2_for_usage_and_input_errors(runs, tmp_path, capsys):
    assert main(["compare", str(runs["base"]), str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["compare", str(runs["base"]), str(empty)]) == 2
    assert "empty.jsonl: no records (the file is empty)" in capsys.readouterr().err
    assert main(["compare", str(runs["base"])]) == 2
    assert "give BASELINE and CURRENT, or --baseline NAME and CURRENT" in capsys.readouterr().err


def test_small_slowdowns_below_the_effect_size_are_not_regressions():
    def rec(scale):
        return {"case": "c", "kind": "measured", "status": "ok", "config": {"settings": {"data": "synthetic"}},
                "metrics": {}, "samples": {"train_step_s": [scale * (0.1 + 0.0001 * i) for i in range(40)]}}
    (r,) = compare_runs([rec(1.0)], [rec(1.05)])  # significant, but 5% < 10%
    assert r.verdict == "ok" and r.p_value < 0.01
    (r,) = compare_runs([rec(1.0)], [rec(1.05)], min_effect=0.04)
    assert r.verdict == "regression"


def _write(folder, records):
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_the_gate_refuses_what_it_cannot_judge(runs, tmp_path, capsys):
    """Different settings, too few samples, options out of range, another suite: exit 2 with one line; an unstable
    case is reported as such and exits 2 instead of passing."""
    other = _records(3, 1.0)
    other[0]["config"]["settings"]["batch_size"] = 8
    assert main(["compare", str(runs["base"]), str(_write(tmp_path / "b8", other))]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("harness: error: case c-seed=0: settings.batch_size: 4 in the baseline, 8 in the current "
                           "run: the runs measure different things (--allow-different-settings to compare them anyway)")
    assert main(["compare", str(runs["base"]), str(tmp_path / "b8"), "--allow-different-settings"]) == 0
    two = _records(4, 1.0)
    for r in two:
        r["samples"]["train_step_s"] = r["samples"]["train_step_s"][:2]
    assert main(["compare", str(runs["base"]), str(_write(tmp_path / "two", two))]) == 2
    assert "2 timed steps in the current run: the gate needs at least 5 per run" in capsys.readouterr().err
    for option, value in (("--min-effect", "10"), ("--alpha", "0"), ("--top1-tolerance", "-1")):
        assert main(["compare", str(runs["base"]), str(runs["slow"]), option, value]) == 2
        assert f"{option} " in capsys.readouterr().err
    foreign = [{**r, "case": "x" + r["case"]} for r in _records(5, 1.0)]
    assert main(["compare", str(runs["base"]), str(_write(tmp_path / "foreign", foreign))]) == 2
    assert "no case in common" in capsys.readouterr().err
    noisy = _records(6, 3.0)  # 3x slower, but measured on a busy host
    noisy[0]["noise"] = {"unstable": True, "reasons": ["other processes used 1.02 cores while it ran (limit 0.25)"]}
    assert main(["compare", str(runs["base"]), str(_write(tmp_path / "noisy", noisy))]) == 1  # the other case
    noisy[1]["noise"] = noisy[0]["noise"]
    assert main(["compare", str(runs["base"]), str(_write(tmp_path / "noisy2", noisy))]) == 2
    out = capsys.readouterr()
    assert "| unstable" in out.out and "cannot be judged (unstable): c-seed=0" in out.err


def test_with_repetitions_the_gate_judges_run_to_run_noise(tmp_path):
    """Per-step samples of one run each see a drift between runs as significant; per-run values of repetitions
    do not, and still catch a real slowdown."""
    def runs_of(scales, seed):
        out = []
        for rep, scale in enumerate(scales):
            for r in _records(seed + rep, scale)[:1]:
                out.append({**r, "repeat": rep, "repeats": len(scales)})
        return out
    base = runs_of([1.0, 1.08, 0.95, 1.03], 10)  # runs of the same code differ by a few percent
    same = runs_of([1.06, 0.97, 1.02, 1.1], 20)
    (r,) = train(compare_runs(base, same))
    assert r.basis == "runs (4 vs 4)" and r.verdict == "ok", r
    (one,) = train(compare_runs(base[1:2], same[3:4]))  # one run each: the steps of two runs 2% apart
    assert one.basis == "steps (20 vs 20)"
    (slow,) = train(compare_runs(base, runs_of([1.35, 1.28, 1.31, 1.4], 30)))
    assert slow.verdict == "regression" and slow.change > 0.25


def _alternating(tmp_path, host, slowdown, seed):
    """Run folders of two sides measured alternately (baseline k, then current k, one minute apart), each
    repetition slowed by the host's state at its time (``host[k]``, shared by both sides of pair k)."""
    sides = {}
    for side, scale in (("base", 1.0), ("cur", 1.0 + slowdown)):
        for k, h in enumerate(host):
            r = _records(seed + 10 * k + (side == "cur"), scale * h)[0]
            minute = 2 * k + (side == "cur")
            r.update(run_id=f"{side}{k}", started_at=f"2026-11-30T10:{minute:02d}:00+00:00")
            _write(tmp_path / side / f"r{k}", [r])
        sides[side] = tmp_path / side
    return sides["base"], sides["cur"]


def test_paired_repetitions_cancel_noise_that_lasts_minutes(tmp_path, capsys):
    """The host's speed moves by up to 30% between pairs: unpaired repetitions cannot tell a 20% slowdown from
    that, alternately measured pairs can; the same code in pairs does not fire."""
    host = [1.0, 1.3, 0.95, 1.2, 1.05]
    base, cur = _alternating(tmp_path / "slow", host, 0.2, 0)
    assert main(["compare", str(base), str(cur)]) == 0  # repetitions unpaired: within noise
    assert "runs (5 vs 5)" in capsys.readouterr().out
    assert main(["compare", str(base), str(cur), "--paired"]) == 1
    out = capsys.readouterr().out
    assert "pairs (5)" in out and re.search(r"worse by (1[7-9]|2[0-3])\.\d%", out)
    base, same = _alternating(tmp_path / "same", host, 0.0, 100)
    assert main(["compare", str(base), str(same), "--paired"]) == 0
    assert "within noise" in capsys.readouterr().out


def test_paired_refuses_runs_not_measured_alternately_and_leaves_out_unstable_pairs(tmp_path, capsys):
    base, cur = _alternating(tmp_path / "a", [1.0, 1.1, 0.9, 1.0], 0.3, 0)
    late = json.loads((cur / "r0" / "results.jsonl").read_text())
    late["started_at"] = "2026-11-30T10:05:30+00:00"  # after the baseline's third repetition began
    (cur / "r0" / "results.jsonl").write_text(json.dumps(late) + "\n")
    assert main(["compare", str(base), str(cur), "--paired"]) == 2
    assert "pairs must be measured alternately" in capsys.readouterr().err
    base, cur = _alternating(tmp_path / "b", [1.0, 1.1, 0.9, 1.0], 0.3, 0)
    (cur / "r3" / "results.jsonl").unlink()
    assert main(["compare", str(base), str(cur), "--paired"]) == 2
    assert "as many repetitions in the baseline as in the current run (4 and 3)" in capsys.readouterr().err
    base, cur = _alternating(tmp_path / "c", [1.0, 1.1, 0.9, 1.0], 0.3, 0)
    noisy = json.loads((cur / "r1" / "results.jsonl").read_text())
    noisy["noise"] = {"unstable": True, "reasons": ["steps drift: second half +30% against the first (limit 20%)"]}
    (cur / "r1" / "results.jsonl").write_text(json.dumps(noisy) + "\n")
    assert main(["compare", str(base), str(cur), "--paired"]) == 1  # judged on the 3 stable pairs
    assert "pairs (3)" in capsys.readouterr().out
    (base / "r3" / "results.jsonl").write_text(json.dumps({**noisy, "run_id": "base3", "started_at":
                                                           "2026-11-30T10:06:00+00:00"}) + "\n")
    assert main(["compare", str(base), str(cur), "--paired"]) == 2
    assert "2 of 4 pairs stable on both sides, 3 needed" in capsys.readouterr().err


def test_the_change_interval_of_pairs_and_of_repetitions_by_hand(tmp_path):
    """Pairs: Student's t interval of the mean log ratio of the per-run medians; repetitions: Welch's interval of the
    difference of mean logs, with the Welch-Satterthwaite degrees of freedom; both mapped back to relative changes."""
    from scipy.stats import t

    base, cur = _alternating(tmp_path, [1.0, 1.3, 0.8, 1.1], 0.25, 40)
    sides = [[r for k in range(4) for r in read_records(p / f"r{k}" / "results.jsonl")] for p in (base, cur)]
    tb, tc = (np.array([np.median(r["samples"]["train_step_s"]) for r in side]) for side in sides)
    d = np.log(tc / tb)
    half = 3.1824463 * d.std(ddof=1) / math.sqrt(4)  # t(0.975, 3)
    (paired,) = train(compare_runs(*sides, paired=True))
    assert paired.change == pytest.approx(math.exp(d.mean()) - 1, rel=1e-9)
    assert paired.change_ci == pytest.approx((math.exp(d.mean() - half) - 1, math.exp(d.mean() + half) - 1), rel=1e-6)
    assert 0.15 < paired.change_ci[0] < 0.25 < paired.change_ci[1] < 0.35
    lc, lb = np.log(tc), np.log(tb)
    vc, vb = lc.var(ddof=1) / 4, lb.var(ddof=1) / 4
    df = (vc + vb) ** 2 / (vc ** 2 / 3 + vb ** 2 / 3)
    half = t.ppf(0.975, df) * math.sqrt(vc + vb)
    diff = lc.mean() - lb.mean()
    (runs,) = train(compare_runs(*sides))
    assert runs.basis == "runs (4 vs 4)"
    assert runs.change == pytest.approx(math.exp(diff) - 1, rel=1e-9)
    assert runs.change_ci == pytest.approx((math.exp(diff - half) - 1, math.exp(diff + half) - 1), rel=1e-6)
    assert runs.change_ci[1] - runs.change_ci[0] > 2 * (paired.change_ci[1] - paired.change_ci[0])  # host noise


def test_the_gate_shows_each_change_with_its_interval_and_says_when_noise_cannot_rule_a_slowdown_out(tmp_path,
                                                                                                      capsys):
    """Pairs that scatter widely around +5% are within noise, and the verdict says that their interval still
    reaches the threshold; tight pairs at +5% rule it out; single runs are labelled as having no interval."""
    wide, _ = _alternating(tmp_path / "wide", [1.0, 1.3, 0.8], 0.0, 0)
    for k, f in enumerate((1.25, 0.9, 1.0)):  # the current side of each pair moved by the host alone
        path = tmp_path / "wide_cur" / f"r{k}" / "results.jsonl"
        path.parent.mkdir(parents=True)
        recs = [json.loads(line) for line in (wide / f"r{k}" / "results.jsonl").read_text().splitlines()]
        for r in recs:
            r["samples"]["train_step_s"] = [v * f * 1.05 for v in r["samples"]["train_step_s"]]
            r["started_at"] = f"2026-11-30T10:{2 * k + 1:02d}:00+00:00"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["compare", str(wide), str(tmp_path / "wide_cur"), "--paired"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| c-seed=0"))
    assert re.search(r"\+\d+\.\d% \[-\d+\.\d%, \+\d+\.\d%\]", row), row
    assert "a 10% slowdown is not ruled out" in row, row
    (r,) = [x for x in train(compare_runs(read_records(wide / "r0" / "results.jsonl"),
                                          read_records(tmp_path / "wide_cur" / "r0" / "results.jsonl")))
            if x.case == "c-seed=0"]
    assert r.change_ci is None and r.basis.startswith("steps")
    base, cur = _alternating(tmp_path / "tight", [1.0, 1.3, 0.8, 1.1], 0.05, 10)
    (tight,) = train(compare_runs(*([r for k in range(4) for r in read_records(p / f"r{k}" / "results.jsonl")]
                                    for p in (base, cur)), paired=True))
    assert tight.change_ci[0] < 0.05 < tight.change_ci[1] < 0.10, tight.change_ci
    assert "not ruled out" not in tight.why
    assert main(["compare", str(base / "r0"), str(cur / "r0")]) == 0
    assert "(single runs)" in capsys.readouterr().out


# --- the rules compare shares with the runner, the report and history (harness.results.case_rules) ------------------

def _case_record(case, step_s: dict[str, list[float]], **extra) -> dict:
    """An ok record of ``case`` (a harness.config.Case) as the runner writes it, with these samples."""
    return {"schema": SCHEMA, "kind": "measured", "suite": "s", "run_id": "r", "case": case.name, "status": "ok",
            "config": case.to_dict(), "metrics": {}, "samples": step_s, "env": {}, **extra}


@pytest.mark.parametrize("setting, value", [("timeout", 61.0), ("data_root", "/elsewhere"), ("seed", 7),
                                            ("repeats", 3), ("verify", "full"), ("workers", 5), ("steps", 21),
                                            ("batch_size", 8)])
def test_compare_the_runner_and_the_report_agree_on_which_settings_identify_a_case(setting, value):
    """One setting changed between two runs of a case: compare refuses them exactly when the runner's resume would
    run the case again and the report would keep them apart as two configurations."""
    import dataclasses

    from harness.config import Case, Settings
    from harness.results.case_rules import IDENTITY_EXCLUDED, identity_key
    from harness.results.frame import records_frame

    settings = Settings(batch_size=4, steps=20, data="tiny", workers=2)
    before = Case("c", "gluon_resnet50_v1b", "fake", "cpu", settings)
    after = dataclasses.replace(before, settings=dataclasses.replace(settings, **{setting: value}))
    steps = [0.02 + 0.0001 * i for i in range(20)]
    b, c = _case_record(before, {"train_step_s": steps}), _case_record(after, {"train_step_s": steps})
    same = setting in IDENTITY_EXCLUDED
    assert same == (setting not in ("workers", "steps", "batch_size"))  # the rule as decided, not just echoed
    assert (identity_key(before.to_dict()) == identity_key(after.to_dict())) == same  # the runner's resume key
    assert records_frame([b, c])["config_key"].nunique() == (1 if same else 2)  # the report's configurations
    if same:
        (r,) = compare_runs([b], [c])
        assert r.verdict == "ok"
    else:
        with pytest.raises(HarnessError, match=rf"case c: settings\.{setting}: \S+ in the baseline, {value!r} in the "
                                               "current run: the runs measure different things"):
            compare_runs([b], [c])


@pytest.mark.parametrize("scenario, timed, untimed", [
    ("eval", "eval_step_s", None),
    ("inference", "inference_b8_s", ("eval_step_s", "inference_b1_s")),  # the framework's evaluation, batch 1
    ("data", "data_backend_w2_batch_s", ("data_core_w2_batch_s",)),
])
def test_compare_judges_eval_inference_and_data_cases_by_the_samples_that_represent_them(scenario, timed, untimed):
    """An eval case by its evaluation pass, an inference case by its runtime at the largest batch (not the
    framework's evaluation it also ran), a data case by the backend's pipeline at the case's worker count; history
    names the same measurement."""
    from harness.config import Case, Settings
    from harness.results.case_rules import representative

    case = Case("c", "gluon_resnet50_v1b", "fake", "cpu",
                Settings(scenario=scenario, data="tiny", workers=2, inference_batch_sizes=[1, 8], data_workers=[0, 2]))
    rng = np.random.default_rng(3)

    def record(timed_scale: float, other_scale: float) -> dict:
        samples = {timed: (timed_scale * 0.02 * (1 + 0.02 * rng.standard_normal(30))).tolist()}
        for key in untimed or ():
            samples[key] = (other_scale * 0.02 * (1 + 0.02 * rng.standard_normal(30))).tolist()
        return _case_record(case, samples)

    metric = {"eval": "eval", "inference": "inference_b8", "data": "data_w2"}[scenario]
    slower = {r.metric: r for r in compare_runs([record(1.0, 1.0)], [record(1.3, 1.0)])}
    assert slower[metric].verdict == "regression"
    assert representative(record(1.0, 1.0)).label.replace(" ", "_") == metric  # what history shows for the case
    if untimed:  # the framework's evaluation in an inference case, the core's pipeline in a data case: not gated
        same = compare_runs([record(1.0, 1.0)], [record(1.0, 1.5)])
        assert {r.verdict for r in same if r.metric != "latency_p50"} <= {"ok", "not judged"}, same
        if scenario == "inference":  # batch 1 is the p50 latency, gated in its own right
            assert next(r for r in same if r.metric == "latency_p50").verdict == "regression"
