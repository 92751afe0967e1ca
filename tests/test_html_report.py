"""The self-contained HTML report (``harness report --format html``), loaded offline in a real browser.

The browser test drives Debian's ``chromium`` and ``chromium-driver`` through selenium (headless), with the network
switched off: the page must load from ``file://``, draw every chart, log no JavaScript error, fetch nothing, and show
the records' own numbers. Without chromium it is skipped, naming what is missing; ``.ci/run`` installs it and sets
``HARNESS_REQUIRE_BROWSER=1``, which turns that skip into a failure. The screenshot (and the page) are kept under
pytest's tmp folder and, where ``HARNESS_ARTEFACTS`` names a folder, there as well.
"""
from __future__ import annotations

import base64
import copy
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from scipy import stats as st

from harness.cli.main import main
from harness.results.html import render_html
from harness.results.records import SCHEMA, append_record, read_records
from harness.results.references import reference_records
from harness.run.runner import run_suite
from harness.run.suite import load_suite

BASELINE = REPO / "results" / "baseline" / "ci_small.jsonl"  # a real run: torch and mindspore, six models, CPU
HOSTILE_CASE = "<img src=x onerror=alert(1)>"
HOSTILE_REASON = "<script>alert('reason')</script> & \"quoted\""

#: two seeds x two repetitions of the fake backend (intervals); seed 2 fails, seed 4 is skipped (HARNESS_FAKE_PLAN)
FAKE_SUITE = {"name": "fake", "models": ["gluon_resnet50_v1b"], "backends": ["fake"], "devices": ["cpu"],
              "settings": {"batch_size": 4, "steps": 8, "warmup": 2, "repeats": 2}, "matrix": {"seed": [0, 1, 2, 4]}}


def _inference_record() -> dict:
    return {"schema": SCHEMA, "kind": "measured", "run_id": "inf", "case": "resnet50_bam-torch-cpu-runtime=torchscript",
            "status": "ok", "reason": None, "repeat": 0,
            "config": {"model": "resnet50_bam", "backend": "torch", "device": "cpu",
                       "variant": {"runtime": "torchscript"},
                       "settings": {"scenario": "inference", "runtime": "torchscript", "data": "tiny",
                                    "batch_size": 20}},
            "metrics": {"inference": {
                "runtime": "torchscript", "latency_ms": {"count": 50, "p50": 3.125, "p90": 3.5, "p99": 4.875},
                "throughput": [{"batch_size": 1, "images_per_s": 310.0}, {"batch_size": 4, "images_per_s": 905.5}],
                "images_per_s": 905.5,
                "accuracy": {"top1": 41.0, "top5": 88.0, "framework_top1": 41.0, "top1_agreement": 100.0}}},
            "samples": {}, "env": {}}


#: top-1 of the seeds added to the real run's resnet50_bam torch case (the first is the recorded one)
SEEDS_TOP1 = {1: 12.5, 2: 17.5}


def _extra_records(real: list[dict]) -> list[dict]:
    """Beside a real run: two more seeds of one of its cases (an interval over three runs), a 2-device run of another
    (scaling), an inference case, and a failed case whose name and reason are markup (escaping)."""
    seeds = []
    for seed, top1 in SEEDS_TOP1.items():
        r = copy.deepcopy(next(r for r in real if r["case"] == "resnet50_bam-torch-cpu"))
        r["case"] += f"-seed={seed}"
        r["config"]["settings"]["seed"], r["config"]["variant"] = seed, {"seed": seed}
        r["metrics"]["eval"]["top1"] = top1
        r["metrics"]["train"]["images_per_s"] *= 1 + seed / 20
        seeds.append(r)
    two = copy.deepcopy(next(r for r in real if r["case"] == "gluon_resnet50_v1b-torch-cpu"))
    two["case"] += "-2dev"
    two["config"]["settings"]["devices"] = 2
    two["metrics"]["train"]["images_per_s"] *= 1.8
    hostile = {"schema": SCHEMA, "kind": "measured", "run_id": "base", "case": HOSTILE_CASE, "status": "failed",
               "reason": HOSTILE_REASON, "repeat": 0, "metrics": {}, "samples": {}, "env": {},
               "config": {"model": "resnet50_bam", "backend": "torch", "device": "cpu", "settings": {}, "variant": {}}}
    return [*seeds, two, _inference_record(), hostile]


def _external_refs(text: str) -> list[str]:
    """What in a page would load something from outside it: a script or stylesheet by reference, an import, a url()."""
    pattern = r"<script[^>]*\ssrc\s*=[^>]*>|<link[^>]*>|@import[^;]*|url\(\s*['\"]?(?:https?:)?//[^)]*\)"
    return re.findall(pattern, text, flags=re.IGNORECASE)


def _rate_ci(values: list[float]) -> tuple[float, float, float]:
    """The geometric mean and the 95% t interval over the logs (centred on it), computed here from the definition
    (harness.measure.intervals)."""
    logs = np.log(values)
    half = st.t.ppf(0.975, len(values) - 1) * logs.std(ddof=1) / math.sqrt(len(values))
    return math.exp(logs.mean()), math.exp(logs.mean() - half), math.exp(logs.mean() + half)


# --- the page itself (no browser) -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page_records() -> list[dict]:
    real = read_records(BASELINE)
    return real + _extra_records(real) + reference_records()


def test_the_page_is_one_self_contained_file_with_everything_escaped(page_records):
    text = render_html(page_records)
    assert _external_refs(text) == []
    assert text.count("<script") == text.count("</script>")  # the inlined bundle closes nothing early
    assert text.count('class="plotly-graph-div"') >= 6 * 3  # per model: throughput, top-1, step times, loss
    assert HOSTILE_CASE not in text and "<script>alert('reason')" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;script&gt;alert(&#x27;reason&#x27;)" in text
    for heading in ("Comparison matrix", "Backends side by side", "Measured beside published", "Scaling efficiency",
                    "Inference", "Failed and skipped cases", "Every run"):
        assert f"<h2>{heading}</h2>" in text
    # every configuration of the real run is a single run: no error bar, and the page says so
    assert "Single runs have no interval and show no error bar: mindspore / cpu" in text


def test_sections_without_data_are_left_out_or_say_none():
    real = [r for r in read_records(BASELINE) if r["case"].startswith("gluon_resnet50_v1b-torch")]
    text = render_html(real)
    for absent in ("Inference", "Measured beside published", "Scaling efficiency", "Backends side by side"):
        assert f"<h2>{absent}</h2>" not in text
    after = text.split("<h2>Failed and skipped cases</h2>", 1)[1]
    assert after.lstrip().startswith("<p>None in this run.</p>")
    assert "No records." in render_html([])


def test_cli_writes_the_html_report_and_refuses_bad_formats_in_one_line(tmp_path, capsys, page_records):
    results = tmp_path / "results.jsonl"
    for r in page_records:
        if r.get("kind", "measured") == "measured":
            append_record(results, r)
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(results), "--references", "--format", "html", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and _external_refs(text) == [] and "Measured beside published" in text
    capsys.readouterr()

    for argv, message in (
            (["--format", "html"], ("harness: error: --format html writes one self-contained file: give it with -o "
                                    "FILE (e.g. -o report.html)")),
            (["--format", "pdf"], "harness: error: --format pdf: unknown format (one of md, csv, json, html)"),
            (["--format", "htm"], ("harness: error: --format htm: unknown format (one of md, csv, json, html); did "
                                   "you mean 'html'?")),
            (["--format", "html", "-o", str(out), "--charts", str(tmp_path / "c")],
             "harness: error: --charts draws PNGs for the markdown report: the HTML report has its charts inside")):
        assert main(["report", str(results), *argv]) == 2
        err = capsys.readouterr().err
        assert err == message + "\n", err
    assert main(["report", str(results)]) == 0 and capsys.readouterr().out.startswith("# harness report")


# --- in the browser -------------------------------------------------------------------------------------------------

def _find_browser() -> tuple[str, str]:
    """chromium and chromedriver, or skip naming what is missing (fail where HARNESS_REQUIRE_BROWSER is set)."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None:
        missing.append("a chromium binary on PATH (apt-get install chromium)")
    if driver_path is None:
        missing.append("chromedriver on PATH (apt-get install chromium-driver)")
    if missing:
        why = "browser test needs " + " and ".join(missing)
        if os.environ.get("HARNESS_REQUIRE_BROWSER"):
            pytest.fail(why + " (HARNESS_REQUIRE_BROWSER is set, as in .ci/run)")
        pytest.skip(why)
    return chromium, driver_path


def _browser(chromium: str, driver_path: str):
    """A headless chromium through selenium, network off, keeping the browser's log and every request."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    return driver


def _load(driver, path: Path) -> tuple[list[dict], list[str]]:
    """Open a file offline: the browser's log entries and every URL the page asked for."""
    driver.get_log("browser"), driver.get_log("performance")  # drop what came before
    driver.get(path.as_uri())
    driver.execute_script("return document.readyState")
    requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m.get("method") == "Network.requestWillBeSent"]
    return driver.get_log("browser"), urls


def _table(driver, table_id: str) -> tuple[list[str], list[list[tuple[str, str | None]]]]:
    """A table's header and, per row, each cell's text as the page shows it and its sort value (data-sort)."""
    return driver.execute_script(
        "const t = document.getElementById(arguments[0]);"
        "return [Array.from(t.tHead.rows[0].cells, c => c.innerText.trim()),"
        " Array.from(t.tBodies[0].rows, r => Array.from(r.cells, c => [c.innerText.trim(),"
        " c.getAttribute('data-sort')]))]", table_id)


def _bars(traces: list[dict]) -> dict[tuple[str, str], tuple]:
    """A bar chart's ``(backend, x label)`` -> (height, error bar up, error bar down; None without one)."""
    out = {}
    for t in traces:
        for i, (x, y) in enumerate(zip(t["x"], t["y"])):
            out[(t["name"], x)] = (y, *((t["err"][0][i], t["err"][1][i]) if t["err"] else (None, None)))
    return out


def _screenshot(driver, path: Path) -> None:
    """The whole page (not only the window) as PNG."""
    size = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": {
        "x": 0, "y": 0, "width": size[0], "height": min(size[1], 30000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def test_the_report_renders_offline_in_chromium_and_shows_the_records_numbers(tmp_path, fake_backend, monkeypatch):
    chromium, driver_path = _find_browser()
    # records: a real torch/mindspore run, the project's runner on the fake backend (two seeds x two repetitions:
    # intervals; one case fails, one is skipped), and a few made here (scaling, inference, markup in a record)
    monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps({"2": "raise", "4": "nodevice"}))
    (tmp_path / "fake.yaml").write_text(json.dumps(FAKE_SUITE))  # JSON is YAML
    run_dir = run_suite(load_suite(tmp_path / "fake.yaml"), tmp_path / "results", run_id="fake-run", quiet=True)
    fake = read_records(run_dir / "results.jsonl")
    assert [r["status"] for r in fake].count("ok") == 4
    real = read_records(BASELINE)
    records = real + fake + _extra_records(real) + reference_records()
    page = tmp_path / "report.html"
    page.write_text(render_html(records, title="html report test"), encoding="utf-8")
    assert _external_refs(page.read_text(encoding="utf-8")) == []

    driver = _browser(chromium, driver_path)
    try:
        from selenium.webdriver.common.by import By

        # the checks can fail: a page that asks the network for a script and throws is caught by both
        bad = tmp_path / "bad.html"
        bad.write_text('<html><head><script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script></head>'
                       "<body><script>notDefinedAnywhere()</script></body></html>")
        logs, urls = _load(driver, bad)
        assert any(e["level"] == "SEVERE" for e in logs) and any(u.startswith("https://") for u in urls)

        logs, urls = _load(driver, page)
        assert [e for e in logs if e["level"] == "SEVERE"] == []
        assert urls == [page.as_uri()]  # nothing asked of the network
        assert driver.title == "html report test"

        # every chart drawn by plotly (an SVG or a canvas inside each chart div)
        charts = driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")
        assert len(charts) >= 20
        blank = [c.get_attribute("id") for c in charts
                 if not c.find_elements(By.CSS_SELECTOR, "svg.main-svg") and not c.find_elements(By.TAG_NAME, "canvas")]
        assert blank == []

        # every run: the page's images/s (text and exact sort value) are the records'
        measured = [r for r in records if r.get("kind", "measured") == "measured"]
        header, rows = _table(driver, "runs")
        col = {name: i for i, name in enumerate(header)}
        assert len(rows) == len(measured)
        shown = {(row[col["run"]][0], row[col["case"]][0], int(row[col["repeat"]][0])): row for row in rows}
        for r in measured:
            row = shown[(r["run_id"], r["case"], r.get("repeat") or 0)]
            assert row[col["status"]][0] == r["status"]
            ips = (r["metrics"].get("train") or {}).get("images_per_s")
            if ips is None:
                assert row[col["images/s"]] == ["", None]
            else:
                assert row[col["images/s"]][0] == f"{ips:.1f}" and float(row[col["images/s"]][1]) == ips

        # sorting by a header click: numbers ascending, then descending
        header_cell = f"#runs thead th:nth-child({col['images/s'] + 1})"
        driver.find_element(By.CSS_SELECTOR, header_cell).click()
        keys = [float(v) for v in driver.execute_script(
            "return Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.cells[arguments[0]]"
            ".getAttribute('data-sort')).filter(v => v !== null)", col["images/s"])]
        assert keys == sorted(keys)
        assert len(keys) == sum(r["status"] == "ok" and "train" in r["metrics"] for r in measured)
        driver.find_element(By.CSS_SELECTOR, header_cell).click()
        first = driver.find_element(By.CSS_SELECTOR, f"#runs tbody tr td:nth-child({col['images/s'] + 1})")
        assert float(first.get_attribute("data-sort")) == max(keys)

        # the throughput chart: bars at the geometric means, error bars the 95% interval of the repetitions and seeds
        figures = driver.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div')).map(g => ({title: g.layout.title.text,"
            " data: g.data.map(t => ({name: t.name, type: t.type, x: t.x && Array.from(t.x), y: t.y && Array.from(t.y),"
            " err: t.error_y ? [Array.from(t.error_y.array), Array.from(t.error_y.arrayminus)] : null}))}))")
        by_title = {f["title"]: f["data"] for f in figures}
        bars = _bars(by_title["gluon_resnet50_v1b: train throughput by backend and device"])
        fake_ips = [r["metrics"]["train"]["images_per_s"] for r in fake if r["status"] == "ok"]
        centre, lo, hi = _rate_ci(fake_ips)
        assert bars[("fake", "cpu<br>run fake-run")] == pytest.approx((centre, hi - centre, centre - lo))
        torch_ips = next(r for r in real if r["case"] == "gluon_resnet50_v1b-torch-cpu")["metrics"]["train"][
            "images_per_s"]
        assert bars[("torch", "cpu<br>run base")] == (pytest.approx(torch_ips), None, None)  # a single run
        assert bars[("torch", "cpu ×2<br>run base")] == (pytest.approx(1.8 * torch_ips), None, None)

        # accuracy over seeds: the mean, its error bar the t interval of the three seeds
        top1 = [next(r for r in real if r["case"] == "resnet50_bam-torch-cpu")["metrics"]["eval"]["top1"],
                *SEEDS_TOP1.values()]
        half = st.t.ppf(0.975, 2) * np.std(top1, ddof=1) / math.sqrt(3)
        bars = _bars(by_title["resnet50_bam: top-1 over seeds and repetitions"])
        assert bars[("torch", "cpu")] == pytest.approx((np.mean(top1), half, half))
        assert bars[("mindspore", "cpu")][1:] == (None, None)

        # loss curves: every backend's runs on one chart, each the record's own per-step losses
        curves = by_title["gluon_resnet50_v1b: training loss, no published recipe"]
        gluon = [r for r in measured if r["status"] == "ok" and r["config"]["model"] == "gluon_resnet50_v1b"]
        assert sorted(map(tuple, (c["y"] for c in curves))) == sorted(tuple(r["samples"]["train_loss"]) for r in gluon)
        assert {c["name"].split(" · ")[0] for c in curves} >= {"gluon_resnet50_v1b-torch-cpu (run base)",
                                                               "gluon_resnet50_v1b-mindspore-cpu (run base)"}

        # step-time boxes: a case's timed steps of every repetition, in ms
        title = "gluon_resnet50_v1b: train step time per case (timed steps of every repetition)"
        boxes = {b["name"]: b["y"] for b in by_title[title]}
        seed0 = [1e3 * s for r in fake if r["case"].endswith("seed=0") for s in r["samples"]["train_step_s"]]
        assert boxes["gluon_resnet50_v1b-fake-cpu-seed=0 (run fake-run)"] == pytest.approx(seed0)

        # inference, scaling, failed cases: the records' figures and texts, markup shown as text
        header, rows = _table(driver, "inference")
        cells = dict(zip(header, (text for text, _ in rows[0])))
        assert cells["p50 ms"] == "3.125" and cells["p99 ms"] == "4.875"
        assert cells["images/s by batch"] == "1: 310.0, 4: 905.5"
        latency = {t["name"]: t["y"] for t in by_title["resnet50_bam: latency at batch 1"]}
        assert latency == {"p50": [3.125], "p90": [3.5], "p99": [4.875]}
        header, rows = _table(driver, "scaling")
        measured_rows = [dict(zip(header, (text for text, _ in row))) for row in rows]
        assert {"model": "gluon_resnet50_v1b", "backend": "torch", "devices": "2", "efficiency": "90.0% (single run)",
                "source": "measured"}.items() <= next(r for r in measured_rows if r["source"] == "measured").items()
        header, rows = _table(driver, "failed")
        failed = {row[0][0]: row[header.index("reason")][0] for row in rows}
        assert failed[HOSTILE_CASE] == HOSTILE_REASON
        assert failed["gluon_resnet50_v1b-fake-cpu-seed=2"] == "build: RuntimeError: model exploded on purpose"
        assert failed["gluon_resnet50_v1b-fake-cpu-seed=4"] == "cpu: no such device in the fake backend"
        assert driver.find_elements(By.TAG_NAME, "img") == []  # the markup in a record made no element

        shot = tmp_path / "html-report.png"
        _screenshot(driver, shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
        if os.environ.get("HARNESS_ARTEFACTS"):
            dest = Path(os.environ["HARNESS_ARTEFACTS"])
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, dest / shot.name)
            shutil.copy(page, dest / "html-report.html")
    finally:
        driver.quit()
