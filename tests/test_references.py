"""Published seed numbers as reference records, and the report that puts them beside measured ones."""
from __future__ import annotations

import json
import re

import pytest

from harness.cli.main import main
from harness.models.specs import MODELS
from harness.results.frame import records_frame
from harness.results.published import PUBLISHED_ROWS
from harness.results.records import SCHEMA
from harness.results.references import PUBLISHED, REFERENCE_FILE, reference_records
from harness.results.report import render_markdown

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


def test_reference_records_use_the_result_schema_and_cite_their_source():
    records = reference_records()
    assert len(records) == len(PUBLISHED) >= 20
    for r in records:
        assert r["schema"] == SCHEMA and r["kind"] == "reference" and r["status"] == "ok"
        assert r["config"]["model"] in MODELS and r["config"]["backend"] in ("torch", "mindspore")
        assert r["config"]["device"] in ("ascend", "gpu") and r["config"]["settings"]["devices"] in (1, 8)
        assert r["env"]["framework_version"] and r["env"]["device_model"]
        src = r["source"]
        assert src["file"].startswith("shared/seeds/") and src["table"] and src["text"]
        assert r["metrics"], r["case"]
    assert len({r["case"] for r in records}) == len(records)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/seeds is not beside the repository")
def test_every_reference_number_is_in_its_seed_file():
    for p in PUBLISHED:
        text = (SEEDS / p.file).read_text(encoding="utf-8")
        for key, value in p.metrics.items():
            if key == "total_time_s":
                continue  # published as hours or h/m/s; checked through the cited text below
            shown = repr(float(value)).removesuffix(".0")
            assert shown in text or shown.rstrip("0").rstrip(".") in text, (p.model, key, value)
        def norm(t: str) -> str:
            return t.replace(" ", "").replace("|", "")

        for piece in re.split(r"; ", p.text):
            core = piece.split(" (")[0]
            assert norm(core) in norm(text), (p.file, core)


def test_shipped_reference_file_is_the_generated_one():
    shipped = [json.loads(line) for line in (REPO / REFERENCE_FILE).read_text(encoding="utf-8").splitlines()]
    assert shipped == json.loads(json.dumps(reference_records()))


def _measured(model, backend, ips=100.0, top1=50.0):
    return {"schema": SCHEMA, "kind": "measured", "run_id": "r", "case": f"{model}-{backend}-cpu", "status": "ok",
            "reason": None, "config": {"model": model, "backend": backend, "device": "cpu",
                                       "settings": {"data": "tiny", "batch_size": 16}},
            "metrics": {"train": {"images_per_s": ips, "ms_per_step": {"mean": 160.0, "p50": 159.0},
                                  "timed_steps": 20},
                        "eval": {"top1": top1, "top5": 90.0}},
            "env": {"device_model": "Xeon", "framework": backend}}


def test_report_over_six_variants_and_two_backends_shows_every_published_number():
    measured = [_measured(m, b) for m in MODELS for b in ("torch", "mindspore")]
    md = render_markdown(measured + reference_records())
    sections = {s.split("\n", 1)[0]: s for s in md.split("\n### ")[1:]}
    assert set(sections) == set(MODELS)
    fmt = {col: f for _, col, f in PUBLISHED_ROWS}
    frame = records_frame(reference_records())
    for _, ref in frame.iterrows():
        section = sections[ref["model"]]
        for col, f in fmt.items():
            v = ref.get(col)
            if v is not None and v == v:  # not NaN
                assert f"pub {f.format(v)}" in section, (ref["case"], col, v)
    matrix = md.split("## Comparison matrix", 1)[1].split("\n## ", 1)[0]
    for m in MODELS:
        assert f"| {m} " in matrix and matrix.count(f"| {m} ") == 2  # torch and mindspore


def test_measured_cell_beside_published_gives_the_difference():
    ref = next(r for r in reference_records() if r["case"] == "resnet50_bam-mindspore-ascend-8p-train")
    m = _measured("resnet50_bam", "mindspore")
    m["config"]["device"] = "ascend"
    m["config"]["settings"]["devices"] = 8
    m["metrics"]["train"]["ms_per_step"]["mean"] = 111.1  # published 101 -> +10.0%
    m["metrics"]["eval"]["top1"] = 77.35
    md = render_markdown([m, ref])
    assert "111.1 (1 run) · pub 101.0 · Δ +10.0%" in md and "77.35 (1 run) · pub 77.35 · Δ +0.0%" in md


def test_scaling_efficiency_from_published_and_measured_runs():
    one = _measured("gluon_resnet50_v1b", "torch", ips=100.0)
    two = _measured("gluon_resnet50_v1b", "torch", ips=180.0)
    two["config"]["settings"]["devices"] = 2
    two["case"] += "-2p"
    md = render_markdown([one, two, *reference_records()])
    scaling = md.split("## Scaling efficiency", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"gluon_resnet50_v1b \| torch\s+\| cpu .*\| 2 .*\| 1 / 1\s+\| 90.0% \(single run\)\s+"
                     r"\| images/s \| measured", scaling)
    # published: 9145.32 / (8 * 1318.2) = 86.7%; BAM Ascend by ms/step 96 / 101 = 95.0%
    assert "86.7%" in scaling and "95.0%" in scaling


def test_report_cli_references_formats_and_charts(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("".join(json.dumps(_measured(m, b)) + "\n" for m in MODELS
                                               for b in ("torch", "mindspore")))
    out = tmp_path / "report" / "report.md"
    out.parent.mkdir()
    assert main(["report", str(run), "--references", "--charts", str(tmp_path / "report" / "charts"),
                 "-o", str(out)]) == 0
    md = out.read_text()
    assert "## Measured beside published" in md and "(charts/throughput-resnet50_bam.png)" in md
    png = tmp_path / "report" / "charts" / "throughput-resnet50_bam.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["report", str(run), "--format", "csv"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].startswith("run_id,case,status") and len(csv) == 1 + 2 * len(MODELS)
    assert main(["report", str(run), "--references", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sum(r["kind"] == "reference" for r in rows) == len(PUBLISHED)


def test_unwritable_outputs_are_one_line_errors(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps(_measured("resnet50_bam", "torch")) + "\n")
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where a folder is needed
    for argv in (["report", str(run), "-o", str(blocker / "r.md")],
                 ["report", str(run), "--charts", str(blocker / "charts")],
                 ["references", "-o", str(blocker / "seeds.jsonl")],
                 ["compare", str(run), str(run), "-o", str(blocker / "c.md")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("harness: error: ") and str(blocker) in err and "\n" not in err, err
