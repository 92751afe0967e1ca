"""The CI recipe of docs/ci.md, run as written: its two workflows are read from the page and their `run:` steps
executed in order (the install step aside: this environment is installed), on a suite of the fake backend with a
steady step time, once on the same code (the gate passes) and once 30% slower (the gate fails the job)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SUITE = """name: ci_fake
models: [gluon_resnet50_v1b]
backends: [fake]
devices: [cpu]
settings: {batch_size: 4, steps: 12, warmup: 1, eval: false, timeout: 120}
"""


def workflows() -> dict[str, dict]:
    """The page's YAML blocks, by workflow name."""
    text = (REPO / "docs" / "ci.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)]
    return {w["name"]: w for w in blocks}


def run_steps(workflow: dict, cwd: Path, env: dict[str, str]) -> list[tuple[str, int]]:
    """Each `run:` step but the install, as the job would (a failing step stops the job, unless `if: always()`);
    (step name, exit status) for each that ran."""
    job = next(iter(workflow["jobs"].values()))
    done, failed = [], False
    for step in job["steps"]:
        if "run" not in step or step.get("name") == "install" or (failed and step.get("if") != "always()"):
            continue
        out = subprocess.run(["bash", "-c", step["run"]], cwd=cwd, env={**env, **job.get("env", {})},
                             capture_output=True, text=True, check=False)
        done.append((step["name"], out.returncode))
        failed = failed or out.returncode != 0
        assert out.returncode in (0, 1), (step["name"], out.stderr[-600:])
    return done


def test_the_documented_workflows_are_what_a_user_copies():
    flows = workflows()
    assert set(flows) == {"harness baseline", "harness gate"}
    gate = next(iter(flows["harness gate"]["jobs"].values()))
    names = [s.get("name") for s in gate["steps"]]
    assert names.index("run the suite") < names.index("gate") < names.index("report")
    assert any(s.get("uses", "").startswith("actions/upload-artifact") and s.get("if") == "always()"
               for s in gate["steps"])
    assert "repeats=3" in next(s["run"] for s in gate["steps"] if s.get("name") == "run the suite")


@pytest.mark.slow
def test_the_recipe_passes_the_same_code_and_fails_a_30_percent_slowdown(tmp_path, fake_backend):
    flows = workflows()
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "ci_fake.yaml").write_text(SUITE)
    bin_dir = str(Path(sys.executable).parent)  # `harness` of this environment
    # the fake's steps sleep, so other tests beside this one cannot slow them; the host check would still call them
    # unstable, and the gate would refuse to judge: this job accepts its neighbours (harness.measure.noise)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "HARNESS_FAKE_STEP_SLEEP": "0.02", "HARNESS_OTHER_CORES_MAX": "2.5"}
    env.pop("HARNESS_GATE_SLOWDOWN", None)
    main = tmp_path / "main"
    main.mkdir()
    baseline_env = {**env, "SUITE": str(tmp_path / "suites" / "ci_fake.yaml")}
    flow = {**flows["harness baseline"]}
    job = next(iter(flow["jobs"].values()))
    job["env"] = {**job["env"], "SUITE": baseline_env["SUITE"], "HARNESS_BASELINES": str(tmp_path / "store")}
    assert run_steps(flow, main, baseline_env) == [("run the suite", 0), ("save the baseline", 0)]
    assert (tmp_path / "store" / "main" / "baseline.json").is_file()
    gate = {**flows["harness gate"]}
    job = next(iter(gate["jobs"].values()))
    job["env"] = {**job["env"], "SUITE": baseline_env["SUITE"], "HARNESS_BASELINES": str(tmp_path / "store")}
    for name, slowdown, expected in (("same", None, 0), ("slow", "0.3", 1)):
        pr = tmp_path / name
        pr.mkdir()
        steps = run_steps(gate, pr, {**env, **({"HARNESS_GATE_SLOWDOWN": slowdown} if slowdown else {})})
        assert steps == [("run the suite", 0), ("gate", expected), ("report", 0)], (name, steps)
        assert (pr / "report.html").is_file() and (pr / "verdict.json").is_file()
        verdict = (pr / "verdict.md").read_text()
        assert ("REGRESSION" in verdict) == bool(expected), verdict
