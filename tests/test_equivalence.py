"""Accuracy over seeds: the equivalence test (TOST), the seeds it would need, the suite's ``seeds:`` key, and the
section both reports and ``harness compare`` show."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.results.equivalence import MARGIN, equivalence, equivalence_table, runs_equivalence, seeds_needed
from harness.results.frame import records_frame
from harness.results.html import render_html
from harness.results.records import SCHEMA
from harness.results.report import render_markdown
from harness.run.suite import load_suite, parse_set

#: Student's t quantiles from a printed table (not from scipy): t(0.95, 8) and t(0.975, 8).
T95_8, T975_8 = 1.8595, 2.3060
#: Normal quantiles from a printed table: z(0.95), z(0.975), z(0.90), z(0.80).
Z95, Z975, Z90, Z80 = 1.6449, 1.9600, 1.2816, 0.8416
#: Five seeds' top-1 with mean 76.0 and variance 0.025: two such samples have a standard error of their difference of
#: exactly 0.1, and Welch's degrees of freedom are 8.
BASE = [76.0, 76.2, 75.8, 76.1, 75.9]


def shifted(d: float) -> list[float]:
    return [v + d for v in BASE]


def test_the_same_accuracy_is_equivalent_with_welchs_interval_by_hand():
    r = equivalence(BASE, shifted(0.1))
    assert r is not None and r.verdict == "equivalent" and not r.measurable
    assert r.difference == pytest.approx(0.1)
    assert r.ci90 == pytest.approx((0.1 - T95_8 * 0.1, 0.1 + T95_8 * 0.1), abs=1e-3)
    assert r.ci95 == pytest.approx((0.1 - T975_8 * 0.1, 0.1 + T975_8 * 0.1), abs=1e-3)
    assert (r.reference.n, r.other.n) == (5, 5) and r.reference.value == pytest.approx(76.0)
    assert r.verdict_text() == "equivalent" and r.interval_text() == "+0.10 [-0.09, +0.29]"


@pytest.mark.parametrize(("shift", "verdict", "words"), [
    (0.5, "equivalent", "measurable, but inside the margin"),  # 95% interval [0.27, 0.73]: real, and small
    (1.0, "different", "not shown to be beyond the margin"),  # [0.77, 1.23]: real, but it straddles +1
    (5.0, "different", "beyond the margin"),
    (-5.0, "different", "beyond the margin"),
])
def test_a_difference_is_judged_against_zero_and_against_the_margin(shift, verdict, words):
    r = equivalence(BASE, shifted(shift))
    assert r is not None and r.verdict == verdict and words in r.verdict_text()
    assert r.measurable and r.seeds_needed is None


def test_a_wide_spread_is_inconclusive_and_says_how_many_more_seeds_would_decide():
    r = equivalence([70.0, 80.0, 75.0, 72.0, 78.0], [71.0, 79.0, 77.0, 70.0, 80.0])
    assert r is not None and r.verdict == "inconclusive"
    assert r.ci90[0] < -MARGIN and r.ci90[1] > MARGIN and r.ci95[0] < 0 < r.ci95[1]
    assert r.seeds_needed is not None and r.seeds_needed > 5
    assert f"about {r.seeds_needed} seeds a side ({r.seeds_needed - 5} more)" in r.verdict_text()
    assert "too few seeds" not in r.verdict_text()


def test_too_few_seeds():
    assert equivalence([76.0], shifted(0.0)) is None  # no spread on one side
    assert equivalence([76.0, float("nan")], shifted(0.0)) is None  # NaN is no seed
    r = equivalence([76.0, 76.1], [76.0, 76.2])
    assert r is not None and r.few_seeds and "rests on too few seeds (2 and 2" in r.verdict_text()


def test_identical_runs_a_side_have_an_exact_difference():
    near, far = equivalence([76.0] * 3, [76.5] * 3), equivalence([76.0] * 3, [78.0] * 3)
    assert near is not None and near.verdict == "equivalent" and near.ci90 == (0.5, 0.5)
    assert far is not None and far.verdict == "different" and far.beyond_margin


def test_equivalent_exactly_when_the_90_percent_interval_lies_inside_the_margin():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(200):
        a = 76 + rng.normal(0, rng.uniform(0.1, 2), 6)
        b = 76 + rng.uniform(-2, 2) + rng.normal(0, rng.uniform(0.1, 2), 6)
        r = equivalence(list(a), list(b))
        assert r is not None
        inside = r.ci90[0] > -MARGIN and r.ci90[1] < MARGIN
        assert (r.verdict == "equivalent") == inside
        seen.add(r.verdict)
    assert seen == {"equivalent", "different", "inconclusive"}


def test_seeds_needed_grows_with_the_spread_and_agrees_with_the_normal_approximation():
    by_sd = [seeds_needed(0.0, sd) for sd in (0.25, 0.5, 1.0, 2.0)]
    assert all(n is not None for n in by_sd) and by_sd == sorted(by_sd) and by_sd[0] < by_sd[-1]
    # TOST at d = 0: n ~ 2 (z95 + z90)^2 sd^2 / margin^2 (17.1 at sd = margin); the t adds a seed or two
    approx = 2 * (Z95 + Z90) ** 2
    assert approx <= seeds_needed(0.0, 1.0) <= approx + 4  # type: ignore[operator]
    # a difference past the margin: the two-sided test, n ~ 2 (z975 + z80)^2 sd^2 / d^2, fewer the larger d
    by_d = [seeds_needed(d, 1.0) for d in (1.5, 2.0, 3.0)]
    assert by_d == sorted(by_d, reverse=True)
    approx = 2 * (Z975 + Z80) ** 2 / 1.5**2
    assert approx <= by_d[0] <= approx + 4  # type: ignore[operator]
    assert seeds_needed(0.0, 1.0, start=30) == 30  # never fewer than the seeds already run
    assert seeds_needed(0.0, 1e6) is None  # past MAX_SEEDS


def _record(backend: str, seed: int, top1: float, data: str = "tiny", run: str = "r", ms: float = 0.02) -> dict:
    rng = np.random.default_rng(seed)
    case = f"gluon_resnet50_v1b-{backend}-cpu-seed={seed}"
    return {"schema": SCHEMA, "kind": "measured", "run_id": run, "case": case, "status": "ok", "reason": None,
            "config": {"name": case, "model": "gluon_resnet50_v1b", "backend": backend, "device": "cpu",
                       "settings": {"batch_size": 8, "data": data, "seed": seed}, "variant": {"seed": seed}},
            "metrics": {"train": {"images_per_s": 100.0}, "eval": {"top1": top1}},
            "samples": {"train_step_s": (ms * (1 + 0.03 * rng.standard_normal(20))).tolist()}, "env": {}}


def _two_backends(shift: float, data: str = "tiny", seeds: int = 5) -> list[dict]:
    return ([_record("torch", s, BASE[s], data) for s in range(seeds)]
            + [_record("mindspore", s, BASE[s] + shift, data) for s in range(seeds)])


def test_both_reports_show_the_verdict_with_its_interval():
    records = _two_backends(0.1)
    md = render_markdown(records)
    assert "## Accuracy over seeds: equivalent?" in md
    row = next(line for line in md.splitlines() if line.startswith("| gluon_resnet50_v1b") and "equivalent" in line)
    assert "torch 76.00 [" in row and "mindspore 76.10 [" in row and "(5 seeds)" in row
    assert "+0.10 [-0.09, +0.29]" in row and "±1" in row
    page = render_html(records)
    assert 'id="equivalence"' in page and "+0.10 [-0.09, +0.29]" in page
    wide = render_markdown(records, margin=0.05)  # the same runs, judged at a narrower margin
    assert "±0.05" in wide and "| equivalent" not in wide
    assert "different, beyond the margin" in render_markdown(_two_backends(5.0))


def test_no_section_without_seeds_a_side_or_accuracy():
    for records in (_two_backends(0.1, data="synthetic"), _two_backends(0.1, seeds=1),
                    [_record("torch", s, BASE[s]) for s in range(5)]):
        assert "Accuracy over seeds" not in render_markdown(records)
        assert 'id="equivalence"' not in render_html(records)
    assert len(equivalence_table(records_frame(_two_backends(0.1)))) == 1  # the control: the same, with seeds


def test_several_runs_are_judged_apart():
    records = _two_backends(0.1) + [{**r, "run_id": "r2"} for r in _two_backends(5.0)]
    table = equivalence_table(records_frame(records))
    assert list(table["run"]) == ["r", "r2"]
    assert table["verdict"].tolist() == ["equivalent", "different, beyond the margin"]


def _write(folder, records):
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(folder)


def test_compare_applies_the_same_test_between_two_runs(tmp_path, capsys):
    base = [_record("torch", s, BASE[s], run="b") for s in range(5)]
    same = [_record("torch", s, BASE[s] + 0.1, run="c") for s in range(5)]
    table = runs_equivalence(base, same)
    assert table[["backend", "difference [90% CI]", "verdict"]].values.tolist() == [
        ["torch", "+0.10 [-0.09, +0.29]", "equivalent"]]
    assert main(["compare", _write(tmp_path / "b", base), _write(tmp_path / "c", same)]) == 0
    out = capsys.readouterr().out
    assert "## Accuracy over seeds: equivalent?" in out and "+0.10 [-0.09, +0.29]" in out
    lower = [_record("torch", s, BASE[s] - 0.9, run="l") for s in range(5)]  # within --top1-tolerance, but real
    assert main(["compare", str(tmp_path / "b"), _write(tmp_path / "l", lower), "--margin", "0.5"]) == 1  # gated
    out = capsys.readouterr().out
    assert "different, beyond the margin" in out and "| top1_seeds" in out and "| regression" in out
    assert main(["compare", str(tmp_path / "b"), str(tmp_path / "c"), "--margin", "0"]) == 2
    assert "--margin 0: must be in (0, 100]" in capsys.readouterr().err
    synthetic = [_record("torch", s, BASE[s], data="synthetic", run="s") for s in range(5)]
    assert runs_equivalence(base, synthetic).empty and runs_equivalence(base, base[:1]).empty


SUITE = """
name: t
models: [gluon_resnet50_v1b]
backends: [torch, mindspore]
devices: [cpu]
settings: {batch_size: 8, steps: 3}
"""


def load(tmp_path, text, **kw):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return load_suite(p, check_backends=False, **kw)


@pytest.mark.parametrize(("seeds", "expected"), [("3", [0, 1, 2]), ("[7, 42]", [7, 42])])
def test_seeds_run_every_case_once_per_seed_backends_alternating(tmp_path, seeds, expected):
    suite = load(tmp_path, SUITE + f"seeds: {seeds}\nmatrix: {{data: [synthetic, tiny]}}\n")
    assert len(suite.cases) == 2 * 2 * len(expected)
    assert [c.settings.seed for c in suite.cases[:4]] == [expected[0]] * 4  # every case with the first seed first
    assert [c.backend for c in suite.cases[:4]] == ["torch", "torch", "mindspore", "mindspore"]
    names = {c.name for c in suite.cases}
    assert f"gluon_resnet50_v1b-mindspore-cpu-data=tiny-seed={expected[-1]}" in names
    assert all(c.variant["seed"] == c.settings.seed for c in suite.cases)
    frame = records_frame({"config": c.to_dict()} for c in suite.cases)
    assert frame["config_key"].nunique() == 4  # the seeds of a case are one configuration


@pytest.mark.parametrize(("extra", "message"), [
    ("seeds: 0\n", "seeds: 0: a count of seeds must be from 1 to 100"),
    ("seeds: 101\n", "a count of seeds must be from 1 to 100"),
    ("seeds: [1, 2, 1]\n", "seeds: seed 1 is given twice"),
    ("seeds: [1, -2]\n", "seeds[1].seed: -2 is below the minimum 0"),
    ("seeds: [1, x]\n", "seeds[1].seed: expected int"),
    ("seeds: []\n", "seeds: expected a count (seeds: 5 runs seeds 0-4) or a non-empty list"),
    ("seeds: true\n", "seeds: expected a count"),
    ("seeds: 3\nmatrix: {seed: [1, 2]}\n", "seeds: matrix.seed is set too"),
    ("seeds: 3\noverrides:\n  - match: {backend: torch}\n    settings: {seed: 4}\n",
     "seeds: overrides[0].settings.seed is set too"),
])
def test_bad_seeds_are_one_line_naming_the_key(tmp_path, extra, message):
    with pytest.raises(HarnessError) as info:
        load(tmp_path, SUITE + extra)
    assert message in str(info.value) and str(tmp_path / "s.yaml") in str(info.value)
    assert "\n" not in str(info.value)


def test_seeds_refuse_a_seed_set_beside_them(tmp_path):
    with pytest.raises(HarnessError, match=r"seeds: settings.seed is set too"):
        load(tmp_path, SUITE.replace("steps: 3}", "steps: 3, seed: 1}") + "seeds: 2\n")
    with pytest.raises(HarnessError, match=r"seeds: --set seed is set too"):
        load(tmp_path, SUITE + "seeds: 2\n", overrides=parse_set(["seed=4"]))
    assert len(load(tmp_path, SUITE + "seeds: 2\n").cases) == 4
