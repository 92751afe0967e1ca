"""The least a training backend writes (tests/fakebackend/harness_minimal.py, NumPy only): at most ten hooks, and
with them it passes ``harness check-backend`` and runs a suite end to end. The core answers the rest
(:mod:`harness.backends.defaults`); a train step's arrays are checkpointed by :mod:`harness.run.checkpoints`."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from conftest import register_backend

from harness.backends import hookspecs
from harness.backends.loading import load_backend, own_hooks, required_hooks
from harness.errors import HarnessError
from harness.measure.environment import cpu_model
from harness.results.records import read_records
from harness.run.checkpoints import STATE_FILE, load_arrays, save_arrays
from harness.run.runner import run_suite
from harness.run.suite import load_suite

#: The most hooks a training backend has to write (docs/plugins.md says so): this test fails if the minimum grows.
MAX_HOOKS = 10


@pytest.fixture
def minimal(tmp_path, monkeypatch):
    """The minimal backend, registered like an installed package, for this process and its children."""
    yield from register_backend(tmp_path, monkeypatch, "minimal", "harness_minimal")


def test_a_minimal_training_backend_writes_at_most_ten_hooks(minimal):
    pm = load_backend("minimal")
    own = own_hooks(pm)
    assert len(own) <= MAX_HOOKS, own
    info = pm.hook.harness_backend_info()
    assert "train" in info.get("scenarios", ["train"])
    assert own == sorted(required_hooks(info))  # exactly what its info calls for, nothing the core answers
    assert not set(own) & set(hookspecs.DEFAULTED_HOOKS)


def test_the_minimal_backend_passes_check_backend(minimal, cli):
    rc, out, err = cli("check-backend", "minimal")
    assert rc == 0, out + err
    passed = {m.group(1).strip() for m in re.finditer(r"^\| (.+?)\s+\| pass\s+\|", out, re.MULTILINE)}
    assert {"harness_train_step: finite loss, weights updated",
            "harness_write_checkpoint / harness_read_checkpoint: exact round trip",
            "TrainStep.save / TrainStep.load: the step after a restore is the same",
            "TrainStep.load refuses the state of another shape (num_classes 7) with HarnessError naming the file",
            "harness_data(train): synthetic stream with a length",
            "harness_eval_step counts only labels >= 0 (the core pads with -1)",
            "harness_synchronize waits for queued work (train steps)"} <= passed, out
    assert re.search(r"backend 'minimal' on cpu: \d+ passed, 0 failed", out)


SUITE = """name: minimal
models: [gluon_resnet50_v1b]
backends: [minimal]
devices: [cpu]
settings: {batch_size: 8, image_size: 32, num_classes: 10, warmup: 1, steps: 6, eval_batches: 2, lr: 0.5,
           checkpoint_every: 3, timeout: 120}
"""


def test_the_minimal_backend_runs_a_suite_end_to_end(minimal, tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text(SUITE)
    run_dir = run_suite(load_suite(path), tmp_path / "results", run_id="r", quiet=True)
    (rec,) = read_records(run_dir / "results.jsonl")
    assert rec["status"] == "ok", rec["reason"]
    train = rec["metrics"]["train"]
    assert train["timed_steps"] == 6 and train["total_steps"] == 7
    assert train["loss_last"] < train["loss_first"]  # one synthetic batch, learnt
    assert rec["metrics"]["eval"]["images"] == 16 and 0 <= rec["metrics"]["eval"]["top1"] <= 100
    env = rec["env"]  # the core's fields, from the backend's info and the core's probe of the CPU
    assert (env["framework"], env["framework_version"], env["backend_version"]) == ("NumPy", np.__version__, "0.1")
    assert env["device_model"] == cpu_model() and env["device_count"] == 1
    kept = train["checkpoints"]["kept_steps"]  # the last two; each holds the core's meta.json and the step's arrays
    assert kept == [6, 7]
    for k in kept:
        folder = os.path.join(train["checkpoints"]["folder"], f"step_{k:09d}")
        assert sorted(os.listdir(folder)) == sorted(["meta.json", STATE_FILE])


def test_save_arrays_and_load_arrays_check_what_comes_back(tmp_path):
    state = {"fc.weight": np.ones((3, 2), np.float32), "count": 4}
    assert save_arrays(str(tmp_path), state) == [STATE_FILE]
    back = load_arrays(str(tmp_path), {"fc.weight": (3, 2), "count": ()})
    assert back["fc.weight"].dtype == np.float32 and np.array_equal(back["fc.weight"], state["fc.weight"])
    assert int(back["count"]) == 4
    file = re.escape(str(tmp_path / STATE_FILE))
    refusals = [({"fc.weight": (5, 2), "count": ()},
                 r"parameter 'fc\.weight' has shape \(3, 2\), the model expects \(5, 2\)"),
                ({"fc.weight": (3, 2), "count": (), "velocity": (3, 2)}, "parameter 'velocity' .* is missing"),
                ({"fc.weight": (3, 2)}, "parameter 'count' has no place")]
    for shapes, why in refusals:
        with pytest.raises(HarnessError, match=f"^checkpoint '{file}' for the case: {why}"):
            load_arrays(str(tmp_path), shapes, what="the case")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessError, match=f"^checkpoint '{re.escape(str(empty / STATE_FILE))}': no such file$"):
        load_arrays(str(empty), {"count": ()})
    with pytest.raises(HarnessError, match=r"ends in \.npz"):
        save_arrays(str(tmp_path), state, name="state.bin")
