"""Training trajectories side by side (``harness parity MODEL --steps N``, harness.backends.trajectory): two
backends trained from the same weights on the same host batches stay in the band when both are right, and a side
with a wrong rule leaves it at the step the rule first acts."""
from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import REPO, needs_mindspore

from harness.backends.trajectory import Band, trajectory
from harness.cli.main import main
from harness.data.tiny import make_tiny_dataset
from harness.errors import HarnessError
from harness.results.html import render_html
from harness.results.trajectories import find_trajectories, read_trajectory, summary_rows, write_trajectory

SMALL = {"width": 0.125, "image_size": 32}
MODEL = "gluon_resnet50_v1b"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    # 40 train images: two batches of 16 an epoch, so three steps cross into a second epoch
    return make_tiny_dataset(str(tmp_path_factory.mktemp("data") / "tiny"), train_per_class=4, val_per_class=1,
                             size=32)


def test_band_bounds_and_nan():
    band = Band(loss_rel=0.05, loss_abs=0.02, weight_rel=1e-3)
    assert band.holds(2.0, 2.09, 1e-4)  # within 5% of the loss
    assert not band.holds(2.0, 2.11, 1e-4)
    assert band.holds(0.1, 0.115, 1e-4)  # a small loss: the absolute floor
    assert not band.holds(0.1, 0.125, 1e-4)
    assert not band.holds(2.0, 2.0, 2e-3)  # the weights moved apart
    assert not band.holds(2.0, math.nan, 0.0) and not band.holds(2.0, 2.0, math.nan)


def test_same_backend_is_exact_and_a_wrong_rule_leaves_the_band_at_once(tiny):
    same = trajectory(MODEL, "torch", "torch", 3, tiny, **SMALL)
    assert same["weight_rel"] == [0.0, 0.0, 0.0] and same["loss_a"] == same["loss_b"]  # same weights, same batches
    assert same["exit_step"] is None
    nesterov = trajectory(MODEL, "torch", "torch", 3, tiny, other_settings={"nesterov": False}, **SMALL)
    # step 1's loss is computed before any update, so only the weights after it can tell
    assert nesterov["loss_diff"][0] == 0.0 and nesterov["loss_a"] == same["loss_a"]
    assert nesterov["exit_step"] == 1 and nesterov["weight_rel"][0] > Band().weight_rel
    # half the weight decay: a change of 1e-5 of the weights a step, out by the second
    decay = trajectory(MODEL, "torch", "torch", 3, tiny, other_settings={"weight_decay": 5e-5}, **SMALL)
    assert decay["exit_step"] in (1, 2), decay["weight_rel"]


@needs_mindspore
def test_torch_and_mindspore_stay_in_the_band(tiny):
    t = trajectory(MODEL, "torch", "mindspore", 3, tiny, **SMALL)
    assert t["exit_step"] is None, t
    assert 0.0 < max(t["weight_rel"]) <= Band().weight_rel / 10  # rounding, not identity, well inside the band
    assert len(t["loss_a"]) == len(t["loss_b"]) == 3 and all(math.isfinite(v) for v in t["loss_b"])


@needs_mindspore
@pytest.mark.slow
def test_rounding_takes_a_correct_pair_out_later_than_a_wrong_rule(tiny):
    # at the default width: rounding alone, amplified by training, needs a few steps to leave the band
    t = trajectory(MODEL, "torch", "mindspore", 8, tiny)
    assert t["exit_step"] is None or t["exit_step"] >= 4, t["weight_rel"]
    wrong = trajectory(MODEL, "torch", "mindspore", 3, tiny, other_settings={"weight_decay_on": "all"})
    assert wrong["exit_step"] in (1, 2), wrong["weight_rel"]


def test_trajectory_refuses_no_steps(tiny):
    with pytest.raises(HarnessError, match="--steps 0"):
        trajectory(MODEL, "torch", "torch", 0, tiny)


def _made(steps: int = 30, exit_step: int | None = 12) -> dict:
    loss_a = [2.3 - 0.01 * k for k in range(steps)]
    return {"kind": "trajectory", "model": MODEL, "backends": ["torch", "mindspore"], "steps": steps,
            "band": {"loss_rel": 0.05, "loss_abs": 0.02, "weight_rel": 1e-3}, "band_text": Band().describe(),
            "exit_step": exit_step, "loss_a": loss_a, "loss_b": [v + 1e-4 * k for k, v in enumerate(loss_a)],
            "loss_diff": [1e-4 * k for k in range(steps)], "weight_rel": [1e-4 * k for k in range(steps)],
            "other_settings": {"nesterov": False}}


def test_summary_rows_show_the_exit_step_and_the_last():
    rows = summary_rows(_made())
    assert [r[0] for r in rows] == [1, 2, 5, 10, 12, 20, 30]
    assert [r[-1] for r in rows] == ["yes", "yes", "yes", "yes", "left", "out", "out"]


def test_report_shows_each_trajectory_file_of_its_folders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(REPO / "results" / "baseline" / "ci_small.jsonl", run / "results.jsonl")
    data, chart = write_trajectory(run, _made())
    assert read_trajectory(data)["exit_step"] == 12
    assert "leaves the band at step 12" in chart.read_text()
    out = tmp_path / "report.html"
    assert main(["report", "--format", "html", "-o", str(out), str(run)]) == 0
    page = out.read_text()
    assert "Training trajectories side by side" in page and "leaves the band at step 12" in page
    assert "only mindspore: nesterov=False" in page
    assert "Training trajectories" not in render_html(json.loads(line) for line in
                                                      (run / "results.jsonl").read_text().splitlines())


def test_a_broken_trajectory_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "trajectory-x-torch-mindspore.json"
    bad.write_text('{"model": "x"}')
    with pytest.raises(HarnessError, match=r"trajectory-x-torch-mindspore.json: not a trajectory file \(no"):
        find_trajectories([tmp_path])
    bad.write_text("{")
    with pytest.raises(HarnessError, match="not JSON"):
        read_trajectory(bad)


def test_cli_prints_the_table_and_writes_the_files(tiny, tmp_path, capsys):
    rc = main(["parity", MODEL, "--backends", "torch", "torch", "--steps", "2", "--width", "0.125", "--image-size",
               "32", "--data-root", tiny, "--other", "nesterov=false", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0  # a measurement: where it leaves the band is read, not gated
    assert "leaves the band at step 1" in out and "| left" in out
    (written,) = find_trajectories([tmp_path])
    assert written["other_settings"] == {"nesterov": False} and written["steps"] == 2
    assert (tmp_path / f"trajectory-{MODEL}-torch-torch.html").is_file()
