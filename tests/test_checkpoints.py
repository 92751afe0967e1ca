"""Training checkpoints: the core's store (when, where, which to resume), resumable data order, and, per backend,
a run killed with SIGKILL and resumed that ends exactly where an uninterrupted run ends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from backends import params_where

from harness.backends.hook_checks import supports_of
from harness.config import Case, Settings
from harness.data.orders import epoch_order
from harness.data.synthetic import SyntheticStream
from harness.errors import HarnessError
from harness.results.records import read_records
from harness.run.checkpoints import Checkpoints, interval, training_digest
from harness.run.scenarios import check_settings


def case(**settings) -> Case:
    """A case with its settings checked as a suite checks them at load (the core's rules, then the scenario's)."""
    made = Settings(**{"checkpoint_every": 4, **settings})
    check_settings(made)
    return Case(name="c", model="gluon_resnet50_v1b", backend="fake", device="cpu", settings=made)


def save(store: Checkpoints, done: int, spe: int = 10) -> Path:
    def write(folder: str) -> list[str]:
        Path(folder, "state.bin").write_bytes(b"x" * done)
        return ["state.bin"]

    return store.save(done, spe, {"losses": [1.0] * done}, write)


# --- the store ---------------------------------------------------------------------------------------

def test_due_every_n_steps_and_at_the_end():
    store = Checkpoints(case(), "unused", every=4)
    assert [d for d in range(11) if store.due(d, 10)] == [4, 8, 10]


def test_interval_in_steps_or_epochs_not_both():
    assert interval(case(checkpoint_every=7), 10) == 7
    assert interval(case(checkpoint_every=None, checkpoint_every_epochs=0.5), 10) == 5
    assert interval(case(checkpoint_every=None), 10) is None
    with pytest.raises(HarnessError, match="checkpoint_every and checkpoint_every_epochs: set one of them, not both"):
        interval(case(checkpoint_every_epochs=1.0), 10)


def test_save_keeps_the_last_k_and_latest_returns_the_newest(tmp_path):
    store = Checkpoints(case(checkpoint_keep=2), tmp_path, every=4)
    for done in (4, 8, 12):
        save(store, done)
    root = tmp_path / "checkpoints" / "rank0"
    assert sorted(p.name for p in root.iterdir()) == ["step_000000008", "step_000000012"]
    done, path, meta = store.latest()
    assert (done, path.name) == (12, "step_000000012")
    assert meta["epoch"] == 1 and meta["batch"] == 2 and meta["losses"] == [1.0] * 12 and meta["files"] == ["state.bin"]
    assert store.summary()["kept_steps"] == [8, 12]


def test_a_partial_checkpoint_is_ignored_and_removed(tmp_path):
    store = Checkpoints(case(), tmp_path, every=4)
    save(store, 4)
    torn = tmp_path / "checkpoints" / "rank0" / "step_000000008.partial"
    torn.mkdir()
    (torn / "state.bin").write_bytes(b"half")  # killed before meta.json: not a checkpoint
    assert store.latest()[0] == 4
    save(store, 8)
    assert not torn.exists()


def test_ranks_resume_from_the_newest_step_they_all_have(tmp_path):
    stores = [Checkpoints(case(), tmp_path, every=4, rank=r, world=2) for r in range(2)]
    for done in (4, 8):
        save(stores[0], done)
    save(stores[1], 4)  # rank 1 was killed before it saved step 8
    assert [s.latest()[0] for s in stores] == [4, 4]
    assert stores[1].latest()[1] == tmp_path / "checkpoints" / "rank1" / "step_000000004"
    with pytest.raises(HarnessError, match="checkpoint_keep: 1: a multi-device case keeps at least 2"):
        case(checkpoint_keep=1, devices=2)


def test_checkpoints_of_other_settings_are_set_aside_not_used(tmp_path, capfd):
    save(Checkpoints(case(lr=0.1), tmp_path, every=4), 4)
    store = Checkpoints(case(lr=0.2), tmp_path, every=4)
    assert store.latest() is None
    assert "checkpoints of other settings (a changed case); moved to checkpoints.stale-" in capfd.readouterr().err
    assert [p.name.startswith("checkpoints.stale-") for p in tmp_path.iterdir()] == [True]
    # settings that do not change the trajectory keep the checkpoints valid
    assert training_digest(case(timeout=5, checkpoint_keep=3, eval=False)) == training_digest(case())


def test_time_to_accuracy_does_not_checkpoint():
    """Refused by the train scenario's rules (a suite refuses it at load, tests/test_validation.py)."""
    with pytest.raises(HarnessError) as exc:
        case(target_top1=50.0, data="tiny")
    assert str(exc.value) == ("checkpoint_every with target_top1: time to accuracy is measured on an uninterrupted "
                              "run, so it does not checkpoint")


# --- data order ---------------------------------------------------------------------------------------

def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = epoch_order(40, 1, seed=3, epoch=2)
    assert np.array_equal(a, epoch_order(40, 1, seed=3, epoch=2)) and sorted(a.tolist()) == list(range(40))
    assert not np.array_equal(a, epoch_order(40, 1, seed=3, epoch=1))
    shards = [epoch_order(40, 1, 3, 2, rank=r, world=2) for r in range(2)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(40))


def test_synthetic_stream_starts_mid_epoch_once():
    stream = SyntheticStream(("b",), 5)
    stream.start_at(3, 2)
    assert len(list(stream)) == 3 and len(list(stream)) == 5


# --- kill -9 and resume, per backend -------------------------------------------------------------------

SUITE = """
name: ckpt
models: [gluon_resnet50_v1b]
backends: [{backend}]
devices: [cpu]
settings:
  data: tiny
  width: 0.25
  image_size: 32
  num_classes: 10
  batch_size: 32          # 10 steps per epoch of the tiny dataset
  warmup: 2
  steps: 28               # 30 steps: three epochs
  augment: {augment}
  workers: 1
  threads: 1
  lr: 0.05
  checkpoint_every: 4
  checkpoint_keep: 2
  timeout: 300
"""


def _harness(*args: str, **kw) -> list[str]:
    return [sys.executable, "-m", "harness.cli.main", *args]


def _final(run_dir: Path) -> dict:
    (record,) = list(read_records(run_dir / "results.jsonl"))
    assert record["status"] == "ok", record.get("reason")
    return record


#: Backends whose augmentation a resumed run cannot repeat, with why: they resume with augment: false. (The torch
#: backend draws each sample's augmentation from (seed, epoch, rank, position), so it resumes augmenting.)
AUGMENT_NOT_REPEATABLE = {
    "mindspore": "its augmentation ops draw from generators inside the data pipeline, which no checkpoint holds",
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", params_where(lambda info: supports_of(info)["checkpoint"]))
def test_a_run_killed_mid_training_resumes_to_the_same_weights_and_metrics(tmp_path, backend):
    suite = tmp_path / "ckpt.yaml"
    suite.write_text(SUITE.format(backend=backend, augment=str(backend not in AUGMENT_NOT_REPEATABLE).lower()))
    results = tmp_path / "results"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "AVX2")}
    whole = subprocess.run(_harness("run", str(suite), "--results", str(results), "--run-id", "whole", "--no-report",
                                    "--quiet"), capture_output=True, check=False, text=True, timeout=600, env=env)
    assert whole.returncode == 0, whole.stderr
    reference = _final(results / "ckpt" / "whole")

    run_dir = results / "ckpt" / "killed"
    ckpts = run_dir / "cases" / f"gluon_resnet50_v1b-{backend}-cpu" / "checkpoints" / "rank0"
    proc = subprocess.Popen(_harness("run", str(suite), "--results", str(results), "--run-id", "killed",
                                     "--no-report", "--quiet"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (ckpts / "step_000000004" / "meta.json").exists():
        time.sleep(0.01)
    worker = json.loads((ckpts.parent.parent / "result.json").read_text())["pid"]
    os.kill(worker, signal.SIGKILL)  # the case's worker (its loader workers exit with it) and the runner, at once
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    kept = sorted(int(p.name[5:]) for p in ckpts.iterdir() if not p.name.endswith(".partial"))
    assert kept and max(kept) < 30, kept  # killed after a checkpoint, before the end
    assert not (run_dir / "results.jsonl").exists() or not read_records(run_dir / "results.jsonl")

    again = subprocess.run(_harness("run", str(suite), "--results", str(results), "--run-id", "killed",
                                    "--resume", str(run_dir), "--no-report", "--quiet"),
                           capture_output=True, check=False, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    resumed = _final(run_dir)
    train, ref = resumed["metrics"]["train"], reference["metrics"]["train"]
    assert [r["step"] for r in train.get("resumed", [])] == [max(kept)], again.stderr
    assert "resumed" not in ref
    assert train["total_steps"] == ref["total_steps"] == 30
    assert train["checkpoints"]["kept_steps"] == ref["checkpoints"]["kept_steps"] == [28, 30]
    # the same computation: every loss, the final weights (parameters and BatchNorm statistics), the evaluation
    assert resumed["samples"]["train_loss"] == reference["samples"]["train_loss"]
    assert train["loss_first"] == ref["loss_first"]
    assert resumed["metrics"]["weights_sha256"] == reference["metrics"]["weights_sha256"]
    assert resumed["metrics"]["eval"]["top1"] == reference["metrics"]["eval"]["top1"]
    assert resumed["metrics"]["eval"]["top5"] == reference["metrics"]["eval"]["top5"]
    # timed samples: the first step after the resume compiles again and is reported on its own
    assert len(resumed["samples"]["train_step_s"]) == len(reference["samples"]["train_step_s"]) - 1
    meta = json.loads((ckpts / "step_000000030" / "meta.json").read_text())
    assert meta["step"] == 30 and meta["epoch"] == 3 and len(meta["losses"]) == 30


# --- the core's loop, end to end with the NumPy backend (seconds) --------------------------------------------

FAKE = """
name: fake
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {{batch_size: 4, warmup: 2, steps: 14, checkpoint_every: 3, timeout: 60, seed: {seed}}}
"""


def _fake_run(tmp_path, monkeypatch, plan: str, run_id: str, resume: bool = False) -> Path:
    from harness.run.runner import run_suite
    from harness.run.suite import load_suite

    monkeypatch.setenv("HARNESS_FAKE_PLAN", json.dumps({"0": plan}))
    suite = tmp_path / "fake.yaml"
    suite.write_text(FAKE.format(seed=0))
    return run_suite(load_suite(suite), tmp_path / "results", run_id=run_id, quiet=True, resume=resume)


def test_a_worker_killed_mid_training_resumes_from_its_checkpoint(tmp_path, fake_backend, monkeypatch):
    whole = read_records(_fake_run(tmp_path, monkeypatch, "", "whole") / "results.jsonl")[0]
    run_dir = _fake_run(tmp_path, monkeypatch, "sigkill_once", "killed")  # SIGKILL at step 7, after checkpoint 6
    (first,) = read_records(run_dir / "results.jsonl")
    assert first["status"] == "failed" and "killed by signal SIGKILL" in first["reason"], first["reason"]
    _fake_run(tmp_path, monkeypatch, "sigkill_once", "killed", resume=True)
    second = read_records(run_dir / "results.jsonl")[1]
    assert second["status"] == "ok", second["reason"]
    calls = (run_dir / "cases" / "gluon_resnet50_v1b-fake-cpu" / "calls.log").read_text().splitlines()
    assert "load_train_state 6" in calls and "start_at 0 6" in calls  # 7 batches per epoch: epoch 0, batch 6
    train, ref = second["metrics"]["train"], whole["metrics"]["train"]
    assert train["resumed"][0]["step"] == 6 and train["total_steps"] == ref["total_steps"] == 16
    assert second["samples"]["train_loss"] == whole["samples"]["train_loss"] == [1 / n for n in range(3, 17)]
    assert second["metrics"]["weights_sha256"] == whole["metrics"]["weights_sha256"]
    assert [c for c in calls if c.startswith("save_train_state")][-3:] == [
        "save_train_state 12", "save_train_state 15", "save_train_state 16"]
    assert train["checkpoints"]["kept_steps"] == [15, 16]


def test_a_backend_without_train_state_refuses_checkpoints_at_load():
    from harness.config import Case, Settings
    from harness.run.validate import check_case

    info = {"name": "x", "models": ["gluon_resnet50_v1b"], "devices": ["cpu"], "supports": {"checkpoint": False}}
    c = Case("c", "gluon_resnet50_v1b", "x", "cpu", Settings(batch_size=4, steps=3, warmup=1, checkpoint_every=2))
    with pytest.raises(HarnessError) as exc:
        check_case(c, info, lambda name: info)
    assert str(exc.value) == ("checkpoint_every: backend 'x' does not save training checkpoints (its info has no "
                              "supports.checkpoint)")
    check_case(c, {**info, "supports": {"checkpoint": True}}, lambda name: info)


def test_a_diverged_run_saves_no_checkpoint_past_the_nan(tmp_path, fake_backend, monkeypatch):
    run_dir = _fake_run(tmp_path, monkeypatch, "nan", "nan")  # the loss of step 4 is NaN
    (rec,) = read_records(run_dir / "results.jsonl")
    assert rec["status"] == "failed" and rec["reason"] == "train: diverged at step 4: loss is nan"
    assert rec["metrics"]["train"]["checkpoints"]["kept_steps"] == [3]
