"""The fairness benchmark's file in the report (``harness report RUN --fairness FILE``): harness / plain loop per
backend, the cross-framework ratios each way of measuring gives beside the report's own, and the file checked at
load. Hand-made files; no framework."""
from __future__ import annotations

import json
import re
import statistics

import pytest

from harness.errors import HarnessError
from harness.results.fairness import SCHEMA, check_fairness, read_fairness, summary_lines
from harness.results.records import SCHEMA as RECORD_SCHEMA
from harness.results.records import append_record

TORCH = {"backend": "torch", "precision": "fp32", "channels_last": False,
         "harness": [10.0, 10.3, 9.9], "expert": [10.6, 10.5, 10.8]}
MINDSPORE = {"backend": "mindspore", "precision": "fp32", "channels_last": False,
             "harness": [7.0, 7.2, 6.9], "expert": [8.5, 8.3, 8.6]}


def _fair(*entries, **top):
    return {"schema": SCHEMA, "model": "gluon_resnet50_v1b", "device": "cpu", "settings": {"rounds": 3},
            "env": {"cpu": "Test CPU <b>", "load_start": [0.1, 0.1, 0.1], "load_end": [0.2, 0.1, 0.1]},
            "backends": list(entries or (TORCH, MINDSPORE)), **top}


def _write(tmp_path, obj, name="fair.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def _run(tmp_path, ips):
    """A run folder with one measured training record per backend at the given images/s."""
    run = tmp_path / "run"
    run.mkdir()
    for backend, value in ips.items():
        append_record(run / "results.jsonl", {
            "schema": RECORD_SCHEMA, "kind": "measured", "run_id": "r", "case": f"gluon/{backend}", "status": "ok",
            "config": {"model": "gluon_resnet50_v1b", "backend": backend, "device": "cpu",
                       "settings": {"batch_size": 16, "data": "synthetic"}, "variant": {}},
            "metrics": {"train": {"images_per_s": value, "ms_per_step": {"p50": 1000 * 16 / value},
                                  "first_step_s": 2.0, "timed_steps": 20}}})
    return run


def _row(text, label):
    """The markdown table row whose first cell is ``label``."""
    return next(line for line in text.splitlines() if line.startswith(f"| {label} "))


def _x(a, b):
    """A ratio as the report shows it: paired by round, the geometric mean of the per-round ratios."""
    return f"{statistics.geometric_mean(x / y for x, y in zip(a, b)):.2f}x"


def test_ratios_are_paired_by_round_so_drift_between_rounds_cancels():
    # The machine speeds up 2x each round; harness is exactly 0.9x of the plain loop within every round.
    drift = {"backend": "torch", "precision": "fp32", "channels_last": False,
             "harness": [0.9, 1.8, 3.6], "expert": [1.0, 2.0, 4.0]}
    (line,) = [x for x in summary_lines(read_fairness_obj(drift)) if "harness / expert" in x]
    assert line.endswith("harness / expert 0.90x [0.90, 0.90]"), line


def read_fairness_obj(*entries):
    return check_fairness(_fair(*entries), "fair.json")


def test_the_report_shows_each_backend_against_its_plain_loop_beside_the_ratios(tmp_path, cli):
    run = _run(tmp_path, {"torch": 10.0, "mindspore": 7.0})
    rc, out, err = cli("report", str(run), "--fairness", str(_write(tmp_path, _fair())))
    assert rc == 0, err
    section = out[out.index("## How fair are the ratios"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    assert "Test CPU" in section and "3 round(s)" in section
    for e in (TORCH, MINDSPORE):
        assert _x(e["harness"], e["expert"]) in _row(section, f"{e['backend']}: harness / plain loop")
    assert _x(MINDSPORE["harness"], TORCH["harness"]) in _row(section, "mindspore / torch: harness")
    assert _x(MINDSPORE["expert"], TORCH["expert"]) in _row(section, "mindspore / torch: plain loops")
    per_round = [(ho / hr) / (eo / er) for ho, hr, eo, er in
                 zip(MINDSPORE["harness"], TORCH["harness"], MINDSPORE["expert"], TORCH["expert"], strict=True)]
    gap = _row(section, "mindspore / torch: harness vs plain loops")
    assert f"Δ {100 * (statistics.geometric_mean(per_round) - 1):+.1f}%" in gap and "[" in gap
    # the report's own ratio for the pair, from its records
    assert "= 0.70x" in _row(section, "mindspore / torch: this report, gluon_resnet50_v1b on cpu")
    assert out.index("## How fair") > out.index("## Backends side by side")


def test_backends_pair_only_at_the_same_precision_and_a_lone_backend_has_no_pair(tmp_path):
    bf16 = {**TORCH, "precision": "bf16", "channels_last": True}
    lines = summary_lines(read_fairness(_write(tmp_path, _fair(bf16, MINDSPORE))))
    assert any(line.strip().startswith("torch bf16 channels-last: harness") for line in lines)
    assert not any("mindspore / torch" in line for line in lines)
    both = summary_lines(read_fairness(_write(tmp_path, _fair())))
    assert [line.split(" (")[0] for line in both if " / " in line.split(":")[0]] == ["mindspore / torch",
                                                                                   "torch / mindspore"]
    one = summary_lines(read_fairness(_write(tmp_path, _fair(TORCH))))
    assert len(one) == 1 and "(1 run)" not in one[0] and "[" in one[0]


def test_html_report_has_the_section_with_file_text_escaped(tmp_path, cli):
    run = _run(tmp_path, {"torch": 10.0, "mindspore": 7.0})
    page = tmp_path / "r.html"
    rc, _, err = cli("report", str(run), "--fairness", str(_write(tmp_path, _fair())), "--format", "html",
                     "-o", str(page))
    assert rc == 0, err
    html = page.read_text()
    assert "How fair are the ratios" in html and 'id="fairness"' in html
    assert "Test CPU &lt;b&gt;" in html and "Test CPU <b>" not in html
    table = html[html.index('id="fairness"'):]
    assert _x(MINDSPORE["harness"], MINDSPORE["expert"]) in table[:table.index("</table>")]


def test_two_files_are_told_apart(tmp_path, cli):
    run = _run(tmp_path, {"torch": 10.0, "mindspore": 7.0})
    bf16 = _write(tmp_path, _fair({**TORCH, "precision": "bf16", "channels_last": True}), "bf16.json")
    rc, out, err = cli("report", str(run), "--fairness", str(_write(tmp_path, _fair())), "--fairness", str(bf16))
    assert rc == 0, err
    assert re.search(r"\| torch: harness / plain loop +\| bf16 channels-last .*\| bf16\.json", out)
    assert re.search(r"\| torch: harness / plain loop +\| fp32 .*\| fair\.json", out)


@pytest.mark.parametrize(("content", "says"), [
    ("not json {", "not JSON"),
    ([1, 2], "not a fairness result"),
    (_fair(schema="harness.result/1"), "'schema' is 'harness.result/1'"),
    (_fair(device=""), "'device' must be a non-empty string"),
    ({**_fair(), "backends": []}, "'backends' must be a non-empty list"),
    (_fair({**TORCH, "harness": []}), "'backends[0].harness' must be a non-empty list of positive numbers"),
    (_fair(TORCH, {**MINDSPORE, "expert": [8.0, "fast"]}), "'backends[1].expert'"),
    (_fair(TORCH, {**MINDSPORE, "expert": [8.0, -1.0]}), "'backends[1].expert'"),
    (_fair({**TORCH, "precision": None}), "'backends[0].precision'"),
    (_fair({**TORCH, "channels_last": "yes"}), "'backends[0].channels_last' must be true or false"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(tmp_path, cli, content, says):
    path = _write(tmp_path, content)
    with pytest.raises(HarnessError, match=re.escape(says)) as err:
        read_fairness(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    rc, out, stderr = cli("report", str(_run(tmp_path, {"torch": 10.0})), "--fairness", str(path))
    assert rc == 2 and says in stderr and "Traceback" not in stderr and out == ""


def test_fairness_is_for_the_reports_not_the_flat_tables(tmp_path, cli):
    run = _run(tmp_path, {"torch": 10.0})
    rc, _, err = cli("report", str(run), "--fairness", str(_write(tmp_path, _fair())), "--format", "csv")
    assert rc == 2 and "--fairness" in err and "csv" in err
    rc, _, err = cli("report", str(run), "--fairness", str(tmp_path / "missing.json"))
    assert rc == 2 and "missing.json: no such fairness result file" in err
