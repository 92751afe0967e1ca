"""Live progress: rich bars on a terminal, sparse plain lines in a pipe, fed the worker's real progress messages."""
from __future__ import annotations

import io
import json
import os
import re

import pytest

from harness.run.launchers.process import Progress
from harness.run.progress import Display

ANSI = re.compile(r"\x1b\[")


class Terminal(io.StringIO):
    """What a terminal looks like to the display: a stream whose isatty() is True."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _term(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


MSG = {"phase": "train", "step": 3, "total": 10, "steps_per_s": 2.0, "images_per_s": 64.0}


def test_a_terminal_gets_a_suite_bar_and_a_case_bar():
    stream = Terminal()
    display = Display(stream, quiet=False)
    todo = display.cases("smoke", ["a", "b"])
    assert next(todo) == "a"
    status = display.watcher("[1/2] case-a", eta=100.0)
    status(MSG)
    out = stream.getvalue()
    assert ANSI.search(out), "no terminal control codes: not a live display"
    assert "suite smoke" in out and "0/2 cases" in out and "suite eta 0:01:" in out
    assert "[1/2] case-a train" in out and "3/10" in out and "64.0 img/s" in out
    assert "eta 0:00:03" in out  # 7 steps left at 2 steps/s
    status({"phase": "eval", "step": 1, "total": 4, "steps_per_s": 1.0})
    assert "1/4" in stream.getvalue()[len(out):] and "[1/2] case-a eval" in stream.getvalue()
    status("!stopped 2 process(es)")
    display.line("[1/2] case-a: ok, 64.0 img/s train (1.0 s)")
    assert "[1/2] case-a: stopped 2 process(es)" in stream.getvalue()
    assert "[1/2] case-a: ok, 64.0 img/s train (1.0 s)" in stream.getvalue()
    assert next(todo) == "b"
    assert "1/2 cases" in stream.getvalue()
    display.watcher("[2/2] case-b", eta=None)({"phase": "warmup", "step": 1, "total": 2})
    assert "[2/2] case-b warmup" in stream.getvalue()
    assert list(todo) == []
    assert display._bars is None  # the loop ended: the bars left the terminal
    end = len(stream.getvalue())
    display.line("after")
    assert stream.getvalue()[end:] == "after\n"


def test_a_pipe_gets_sparse_plain_lines_without_escape_codes():
    stream = io.StringIO()
    display = Display(stream, quiet=False)
    todo = display.cases("smoke", ["a"])
    next(todo)
    status = display.watcher("[1/1] case-a", eta=50.0)
    status(MSG)
    status({**MSG, "step": 4})  # within 10 s of the last line: not printed
    display.line("[1/1] case-a: ok, 64.0 img/s train (1.0 s)")
    list(todo)
    out = stream.getvalue()
    assert not ANSI.search(out) and "\r" not in out
    lines = out.splitlines()
    assert lines[0].startswith("[1/1] case-a train 3/10 | 64.0 img/s | 0:00:00 | eta 0:00:03 | suite eta 0:00:")
    assert lines[1:] == ["[1/1] case-a: ok, 64.0 img/s train (1.0 s)"]


def test_quiet_silences_progress_on_a_terminal_but_keeps_the_case_lines():
    stream = Terminal()
    display = Display(stream, quiet=True)
    todo = display.cases("smoke", ["a"])
    next(todo)
    display.watcher("[1/1] case-a", eta=None)(MSG)
    display.line("[1/1] case-a: ok")
    list(todo)
    assert stream.getvalue() == "[1/1] case-a: ok\n"


def test_the_worker_measures_steps_and_images_per_second(monkeypatch):
    now = [100.0]  # a fake clock (seconds)
    read_fd, write_fd = os.pipe()
    try:
        monkeypatch.setenv("HARNESS_PROGRESS_FD", str(write_fd))
        monkeypatch.setenv("HARNESS_PROGRESS_INO", str(os.fstat(write_fd).st_ino))
        progress = Progress(images_per_step=16, clock=lambda: now[0])
        progress("train", 1, 10, force=True)  # the phase's first report: nothing measured yet
        now[0] += 2.0
        progress("train", 5, 10, force=True)  # 4 steps in 2 s
        now[0] += 0.3
        progress("train", 6, 10)  # 0.3 s after the last line: not sent
        now[0] += 0.3
        progress("train", 7, 10)  # 0.6 s after it: sent
        progress("inference", 1, 3, force=True)  # a new phase measures from its own first report
        now[0] += 0.5
        progress("inference", 2, 3, force=True)
        msgs = [json.loads(line) for line in os.read(read_fd, 10000).decode().splitlines()]
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert [(m["phase"], m["step"]) for m in msgs] == [("train", 1), ("train", 5), ("train", 7), ("inference", 1),
                                                       ("inference", 2)]
    assert msgs[0] == {"phase": "train", "step": 1, "total": 10}
    assert msgs[1]["steps_per_s"] == pytest.approx(2.0) and msgs[1]["images_per_s"] == pytest.approx(32.0)
    assert msgs[2]["steps_per_s"] == pytest.approx(6 / 2.6)
    assert msgs[3] == {"phase": "inference", "step": 1, "total": 3}
    assert msgs[4]["steps_per_s"] == pytest.approx(2.0) and "images_per_s" not in msgs[4]  # batch sizes vary


SUITE = """
name: live
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 4, steps: 12, warmup: 1, eval: false, timeout: 60}
"""


def test_a_real_run_on_a_terminal_shows_the_bars_and_the_case_line(tmp_path, fake_backend, monkeypatch):
    from harness.results.records import read_records
    from harness.run.runner import run_suite
    from harness.run.suite import load_suite

    monkeypatch.setenv("HARNESS_FAKE_STEP_SLEEP", "0.15")
    (tmp_path / "live.yaml").write_text(SUITE)
    stream = Terminal()
    run_dir = run_suite(load_suite(tmp_path / "live.yaml"), tmp_path / "results", run_id="r1", stream=stream)
    (rec,) = read_records(run_dir / "results.jsonl")
    out = stream.getvalue()
    assert "suite live" in out and "0/1 cases" in out
    assert re.search(r"gluon_resnet50_v1b-fake-cpu train\s.*\d+/12\s+\d+\.\d img/s", out), out[-2000:]
    assert f"[1/1] gluon_resnet50_v1b-fake-cpu: ok, {rec['metrics']['train']['images_per_s']:.1f} img/s" in out
