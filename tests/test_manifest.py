"""Dataset manifests (:mod:`harness.data.manifest`): one scan of a split, kept beside the data (or in the cache when the
data are read-only), rescanned per changed class folder, verified to the level asked, shared by processes that
start together; and what builds on them: ``scan_split``, ``harness data scan|info``, one scan per suite,
input-bound training (``metrics.train.input``) and ``scenario: data`` (``metrics.input_pipeline``)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import image_folder

import harness.data.manifest
import harness.data.splits
from harness.config import Settings
from harness.data.manifest import (
    cache_root,
    load_manifest,
    manifest_path,
    read_manifest,
)
from harness.data.tiny import make_tiny_dataset
from harness.errors import HarnessError
from harness.measure.steps import INPUT_BOUND_SHARE, input_wait
from harness.results.records import read_records
from harness.run.scenarios.data import MIN_TIMED

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Manifests of read-only data go to a cache of this test; empty per-process scan state of harness.data.folders."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(harness.data.splits, "_SCANS", {})
    monkeypatch.setattr(harness.data.splits, "_SUMMARY", {})
    monkeypatch.setattr(harness.data.splits, "_DECODE_BAD", {})


def _images(root: Path, layout: dict[str, list[str]], n: int = 3, ext: str = "jpg", size: int = 64) -> Path:
    return image_folder(root, layout, n, ext, size)


def _cut(path: Path, fraction: float) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * fraction)])  # in place: the class folder's mtime does not change
    return path


def _errors(m) -> dict[str, str]:
    return {path: e for (path, _), e in zip(m.samples, m.errors) if e is not None}


# --- load_manifest ----------------------------------------------------------------------------------------------


def test_first_scan_then_reuse_then_only_the_changed_class(tmp_path):
    root = _images(tmp_path / "data", {"train": ["a", "b", "c"]})
    first = load_manifest(str(root), "train")
    assert first.classes == ["a", "b", "c"] and first.scanned_classes == 3 and first.scans == 1
    assert first.path == root / ".harness" / "manifest-train.json" and first.path.is_file()  # beside the data
    assert len(first.samples) == 9 and first.errors == [None] * 9
    assert first.samples[0] == (str(root / "train" / "a" / "0.jpg"), 0) and first.samples[-1][1] == 2
    stored = read_manifest(first.path)
    assert stored["scans"] == 1 and sorted(stored["classes"]) == ["a", "b", "c"]
    assert stored["classes"]["b"]["files"] == ["0.jpg", "1.jpg", "2.jpg"]

    again = load_manifest(str(root), "train")  # nothing changed: nothing scanned, the same answer
    assert again.scanned_classes == 0 and again.scans == 1
    assert (again.classes, again.samples, again.errors) == (first.classes, first.samples, first.errors)

    time.sleep(0.05)  # the next timestamp tick of the file system
    added = root / "train" / "b" / "9.jpg"
    shutil.copy(root / "train" / "b" / "0.jpg", added)
    changed = load_manifest(str(root), "train")
    assert changed.scanned_classes == 1 and changed.scans == 2  # class b alone
    assert (str(added), 1) in changed.samples and len(changed.samples) == 10
    assert read_manifest(changed.path)["classes"]["b"]["files"][-1] == "9.jpg"

    shutil.rmtree(root / "train" / "a")
    dropped = load_manifest(str(root), "train")
    assert dropped.classes == ["b", "c"] and dropped.scanned_classes == 0
    assert len(dropped.samples) == 7 and {y for _, y in dropped.samples} == {0, 1}  # labels follow the classes
    assert not any(p.startswith(str(root / "train" / "a")) for p, _ in dropped.samples)
    assert sorted(read_manifest(dropped.path)["classes"]) == ["b", "c"]


def test_a_torn_or_foreign_manifest_is_rebuilt(tmp_path):
    root = _images(tmp_path / "data", {"train": ["a", "b"]}, n=2)
    path = load_manifest(str(root), "train").path
    for text in ("{", json.dumps({"schema": "harness.data.manifest/0", "classes": {}, "scans": 7}), "[]"):
        path.write_text(text)
        m = load_manifest(str(root), "train")
        assert m.scanned_classes == 2 and m.scans == 1 and len(m.samples) == 4
        assert read_manifest(path)["scans"] == 1


def test_load_manifest_refuses_bad_input_in_one_line(tmp_path):
    root = _images(tmp_path / "data", {"train": ["a", "empty"]}, n=1)
    for f in (root / "train" / "empty").iterdir():
        f.unlink()
    with pytest.raises(HarnessError, match="has no images"):
        load_manifest(str(root), "train")
    with pytest.raises(HarnessError, match=r"verify: 'some' is not one of none, header, full"):
        load_manifest(str(root), "train", "some")
    with pytest.raises(HarnessError, match="no such folder"):
        load_manifest(str(tmp_path / "nowhere"), "train")
    with pytest.raises(HarnessError, match=r"split folder .* is missing"):
        load_manifest(str(root), "val")


def test_read_only_data_keep_their_manifest_in_the_cache(tmp_path, monkeypatch):
    root = _images(tmp_path / "data", {"train": ["a", "b"]}, n=2)
    cache = tmp_path / "cache"
    if os.geteuid() == 0:  # a mode does not stop root: the data root is made unwritable for the manifest alone
        def writable(folder: Path) -> bool:
            assert folder == root / ".harness"
            return False

        monkeypatch.setattr(harness.data.manifest, "_writable", writable)
    else:
        root.chmod(0o555)
    try:
        m = load_manifest(str(root), "train")
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        assert m.path == cache / "manifests" / f"data-{digest}" / "manifest-train.json" and m.path.is_file()
        assert not (root / ".harness").exists() and m.scanned_classes == 2
        again = load_manifest(str(root), "train")
        assert again.path == m.path and again.scanned_classes == 0 and again.samples == m.samples
        blocker = tmp_path / "file"
        blocker.write_text("")
        monkeypatch.setenv("HARNESS_CACHE", str(blocker / "cache"))  # the cache cannot be written either
        with pytest.raises(HarnessError) as exc:
            load_manifest(str(root), "train")
        assert "\n" not in str(exc.value) and "set HARNESS_CACHE to a writable folder" in str(exc.value)
        assert str(exc.value).startswith(f"data_root '{root}': cannot write its manifest beside the data nor in "
                                         f"the cache '{blocker}/cache/manifests/data-{digest}'")
    finally:
        root.chmod(0o755)


def test_cache_root_follows_harness_cache_then_xdg(tmp_path, monkeypatch):
    assert cache_root() == tmp_path / "cache"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "harness"


def test_verify_levels_none_header_full_and_upgrades(tmp_path):
    root = _images(tmp_path / "jpg", {"train": ["a", "b"]})
    cut = _cut(root / "train" / "a" / "1.jpg", 2 / 3)  # a download cut short: the header is whole
    m = load_manifest(str(root), "train", "none")
    assert m.scanned_classes == 2 and m.errors == [None] * 6  # files listed, trusted
    m = load_manifest(str(root), "train", "header")  # more asked than was done: every class again
    assert m.scanned_classes == 2 and m.scans == 2
    assert list(_errors(m)) == [str(cut)] and _errors(m)[str(cut)].startswith("truncated JPEG")
    less = load_manifest(str(root), "train", "none")  # less asked than was done: nothing again, findings kept
    assert less.scanned_classes == 0 and less.errors == m.errors

    bmp = _images(tmp_path / "bmp", {"train": ["a", "b"]}, ext="bmp")
    half = _cut(bmp / "train" / "b" / "0.bmp", 0.5)  # a BMP cut in half passes the header check
    m = load_manifest(str(bmp), "train", "header")
    assert m.errors == [None] * 6
    m = load_manifest(str(bmp), "train", "full")
    assert m.scanned_classes == 2 and list(_errors(m)) == [str(half)] and _errors(m)[str(half)].strip()
    m = load_manifest(str(bmp), "train", "header")
    assert m.scanned_classes == 0 and list(_errors(m)) == [str(half)]
    assert {c["verify"] for c in read_manifest(m.path)["classes"].values()} == {"full"}


def test_scan_split_reads_the_manifest_at_the_cases_verify_level(tmp_path):
    root = _images(tmp_path / "data", {"train": ["a", "b"]})
    cut = _cut(root / "train" / "b" / "2.jpg", 2 / 3)
    s = Settings(data="folder", data_root=str(root), verify="none", max_bad_images=0.5)
    classes, samples, bad = harness.data.splits.scan_split(s, "train")
    assert classes == ["a", "b"] and len(samples) == 6 and bad == []
    path = manifest_path(str(root), "train")
    assert read_manifest(path)["scans"] == 1
    harness.data.splits._SCANS.clear()  # another process: the next case
    header = Settings(data="folder", data_root=str(root), verify="header", max_bad_images=0.5)
    _, samples, bad = harness.data.splits.scan_split(header, "train")
    assert [samples[i][0] for i in bad] == [str(cut)] and read_manifest(path)["scans"] == 2
    harness.data.splits._SCANS.clear()
    assert harness.data.splits.scan_split(header, "train")[2] == bad and read_manifest(path)["scans"] == 2


_LOAD = """
import json, os, sys, time
import harness.data.splits
from harness.data.manifest import load_manifest
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
m = load_manifest(sys.argv[1], "train", "header")
print(json.dumps({"files": len(m.samples), "scans": m.scans, "scanned_classes": m.scanned_classes}))
"""


def test_processes_starting_together_scan_once(tmp_path):
    root = _images(tmp_path / "data", {"train": [f"n{c:02d}" for c in range(20)]}, n=10, size=32)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _LOAD, str(root), str(go), str(tmp_path / f"ready{k}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for k in range(4)]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{k}").exists() for k in range(4)):  # all imported: they start together
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.01)
        go.touch()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [o["files"] for o in outs] == [200] * 4
    assert sorted(o["scanned_classes"] for o in outs) == [0, 0, 0, 20]  # one scanned, the others read
    assert {o["scans"] for o in outs} == {1}
    assert read_manifest(manifest_path(str(root), "train"))["scans"] == 1


def test_a_tiny_dataset_with_a_manifest_beside_it_can_still_be_regenerated(tmp_path):
    root = make_tiny_dataset(str(tmp_path / "tiny"), classes=2, train_per_class=2, val_per_class=1, size=16)
    load_manifest(root, "train")
    make_tiny_dataset(root, classes=3, train_per_class=2, val_per_class=1, size=16)  # other parameters: replaced
    assert load_manifest(root, "train").classes == ["class_00", "class_01", "class_02"]


# --- harness data scan | info -------------------------------------------------------------------------------------


def test_data_scan_and_info(tmp_path, cli):
    root = make_tiny_dataset(str(tmp_path / "tiny"), classes=3, train_per_class=4, val_per_class=2, size=32)
    rc, out, err = cli("data", "info", root)
    assert rc == 0 and out.splitlines()[0].startswith("train: no manifest yet (")

    rc, out, err = cli("data", "scan", root)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line, split, files in zip(lines, ("train", "val"), (12, 6)):
        path = re.escape(str(Path(root) / ".harness" / f"manifest-{split}.json"))
        assert re.fullmatch(rf"{split}: 3 classes, {files} files, 0 not readable; 3 class folder\(s\) scanned in "
                            rf"\d+\.\d s; {path}", line), line
    rc, out, err = cli("data", "scan", root)  # nothing changed: nothing scanned
    assert rc == 0 and all("; 0 class folder(s) scanned in " in line for line in out.strip().splitlines())

    rc, out, err = cli("data", "info", root)
    lines = out.strip().splitlines()
    assert rc == 0 and len(lines) == 2
    assert lines[0].startswith("train: 3 classes, 12 files (") and lines[1].startswith("val: 3 classes, 6 files (")
    assert all("0 not readable, verified: header; scans: 1; " in line for line in lines)

    empty = tmp_path / "empty"
    (empty / "training").mkdir(parents=True)
    for action in ("scan", "info"):
        rc, out, err = cli("data", action, str(empty))
        assert rc == 2 and out == "" and err.strip().splitlines() == [
            f"harness: error: {empty}: no train/ or val/ folder (expected DIR/<split>/<class>/<images>)"]
    rc, out, err = cli("data", "scan", str(tmp_path / "nowhere"))
    assert rc == 2 and err.strip() == f"harness: error: {tmp_path / 'nowhere'}: no such folder"


# --- a suite: one scan however many cases -------------------------------------------------------------------------


def test_one_scan_per_suite_however_many_cases(tmp_path, fake_backend, cli):
    root = make_tiny_dataset(str(tmp_path / "data"), classes=3, train_per_class=8, val_per_class=4, size=32)
    suite = tmp_path / "scan.yaml"
    suite.write_text(f"""name: scan
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {{batch_size: 4, steps: 2, warmup: 1, workers: 0, image_size: 32, width: 0.25, data: folder,
           data_root: {root}, timeout: 120}}
matrix: {{seed: [0, 1, 2]}}
""")
    for run_id in ("r1", "r2"):
        rc, _out, err = cli("run", str(suite), "--results", str(tmp_path / "results"), "--run-id", run_id, "--quiet",
                           "--no-report")
        assert rc == 0, err
        records = read_records(tmp_path / "results" / "scan" / run_id / "results.jsonl")
        assert [r["status"] for r in records] == ["ok"] * 3
        assert all(r["metrics"]["eval"]["images"] == 12 for r in records)  # val read too
        for split in ("train", "val"):
            assert read_manifest(manifest_path(root, split))["scans"] == 1, (run_id, split)


# --- input-bound training -----------------------------------------------------------------------------------------


def test_input_wait_share_and_limit():
    assert INPUT_BOUND_SHARE == 0.2
    got = input_wait([0.25, 0.25], [0.5, 1.5])
    assert got == {"wait_ms_mean": 250.0, "step_ms_mean": 1000.0, "wait_share": 0.25, "input_bound": True,
                   "limit": 0.2}
    assert input_wait([0.125], [0.625])["input_bound"] is True  # at the limit
    calm = input_wait([0.001] * 4, [0.1] * 4)
    assert calm["input_bound"] is False and calm["wait_share"] == pytest.approx(0.01)
    assert input_wait([0.5, 0.5, 9.0], [1.0, 1.0])["wait_share"] == 0.5  # pairs only
    assert input_wait([2.0], [1.0])["wait_share"] == 1.0
    assert input_wait([], []) is None and input_wait([0.1], []) is None and input_wait([0.0], [0.0]) is None


_FEED = """name: feed
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {{batch_size: 8, steps: 6, warmup: 1, eval: false, workers: 0, image_size: 160, augment: true,
           width: 0.25, data_root: {root}, timeout: 120}}
matrix: {{data: [folder, synthetic]}}
"""


def test_a_starved_loader_is_marked_input_bound(tmp_path, fake_backend, monkeypatch, cli):
    from harness.run.runner import run_suite
    from harness.run.suite import load_suite

    monkeypatch.setenv("HARNESS_FAKE_STEP_SLEEP", "0.005")  # a model that computes: 5 ms a step
    root = make_tiny_dataset(str(tmp_path / "data"), classes=2, train_per_class=16, val_per_class=2, size=64)
    (tmp_path / "feed.yaml").write_text(_FEED.format(root=root))
    terminal = io.StringIO()
    run_dir = run_suite(load_suite(tmp_path / "feed.yaml"), tmp_path / "results", run_id="r1", quiet=True,
                        stream=terminal)
    by = {r["config"]["settings"]["data"]: r for r in read_records(run_dir / "results.jsonl")}
    assert by["folder"]["status"] == by["synthetic"]["status"] == "ok"
    starved = by["folder"]["metrics"]["train"]["input"]
    assert starved["input_bound"] is True and starved["wait_share"] >= 0.2 and starved["limit"] == 0.2
    assert 0 < starved["wait_ms_mean"] <= starved["step_ms_mean"]
    fed = by["synthetic"]["metrics"]["train"]["input"]
    assert fed["input_bound"] is False and fed["wait_share"] < 0.2

    lines = terminal.getvalue().splitlines()
    folder_line = next(line for line in lines if "-data=folder: ok" in line)
    share = f"{100 * starved['wait_share']:.0f}%"
    assert f"INPUT-BOUND ({share} of each step waiting for data)" in folder_line
    assert "INPUT-BOUND" not in next(line for line in lines if "-data=synthetic: ok" in line)

    rc, out, err = cli("report", str(run_dir))
    assert rc == 0, err
    row = next(line for line in out.splitlines() if line.startswith("| INPUT-BOUND"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert sorted(cells) == ["", f"1 of 1: waiting for data took {share} of a step (limit 20%)"]


# --- scenario: data -----------------------------------------------------------------------------------------------


_DATA_SUITE = """name: feeds
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 4, steps: 3, warmup: 1, eval: false, workers: 0, image_size: 64, width: 0.25, data: tiny,
           timeout: 300}
include:
  - {models: [gluon_resnet50_v1b], backends: [fake], devices: [cpu], settings: {scenario: data, data_workers: [0, 1]}}
"""


def test_data_scenario_times_both_pipelines_per_worker_count(tmp_path, fake_backend, cli):
    from harness.run.runner import run_suite
    from harness.run.suite import load_suite

    (tmp_path / "feeds.yaml").write_text(_DATA_SUITE)
    suite = load_suite(tmp_path / "feeds.yaml")
    assert [c.name for c in suite.cases] == ["gluon_resnet50_v1b-fake-cpu", "gluon_resnet50_v1b-fake-cpu-scenario=data"]
    run_dir = run_suite(suite, tmp_path / "results", run_id="r1", quiet=True, stream=io.StringIO())
    train, feed = read_records(run_dir / "results.jsonl")
    assert train["status"] == feed["status"] == "ok", (train["reason"], feed["reason"])
    assert "train" in train["metrics"] and "train" not in feed["metrics"]
    pipe = feed["metrics"]["input_pipeline"]
    runs = {(p["pipeline"], p["workers"]): p for p in pipe["pipelines"]}
    assert set(runs) == {("backend", 0), ("core", 0), ("backend", 1), ("core", 1)} and len(pipe["pipelines"]) == 4
    timed = max(3, MIN_TIMED)  # steps, or at least MIN_TIMED: a prefetched queue would inflate a short window
    for p in runs.values():
        assert p["images_per_s"] > 0 and p["timed_batches"] == p["ms_per_batch"]["count"] == timed
        # energy over each pipeline's timed batches: measured, or null with the reason (no RAPL in most VMs)
        assert p["energy"]["seconds"] is None or p["energy"]["seconds"] > 0
        assert (p["energy"]["joules"] is None) == bool(p["energy"]["reason"]), p["energy"]
    per_image = pipe["per_image"]
    assert per_image["images"] > 0 and per_image["decode_ms"] > 0 and per_image["augment_ms"] > 0
    assert per_image["one_worker_images_per_s"] > 0
    assert len(feed["samples"]["data_core_w1_batch_s"]) == timed

    rc, out, err = cli("report", str(run_dir))
    assert rc == 0, err
    assert any(line.startswith("| data pipeline images/s (alone)") for line in out.splitlines())
    matrix = out.split("## Comparison matrix", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in matrix.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert "data ceiling images/s" in header and len(rows) == 3  # header, rule, the training case
    cells = dict(zip(header, (c.strip() for c in rows[2].strip("|").split("|"))))
    assert cells["data ceiling images/s"] == f"{runs['backend', 0]['images_per_s']:.1f}"  # at the case's workers


def test_data_scenario_on_synthetic_data_is_refused_at_load(tmp_path, fake_backend, cli):
    (tmp_path / "bad.yaml").write_text(_DATA_SUITE.replace("data: tiny", "data: synthetic"))
    rc, out, err = cli("run", str(tmp_path / "bad.yaml"), "--results", str(tmp_path / "results"))
    assert rc == 2 and out == "" and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"harness: error: {tmp_path / 'bad.yaml'}: case gluon_resnet50_v1b-fake-cpu-scenario=data")
    assert line.endswith("scenario data times reading a dataset folder: data must be folder or tiny, not synthetic")
    assert not (tmp_path / "results").exists()
