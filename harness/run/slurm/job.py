"""A case's Slurm job, on the first node of its allocation: runs the case (:func:`harness.run.case_run.measure`,
as a local run does) and writes its record, whole, to ``record.json`` in the case folder; ``harness run`` appends it
to the run's ``results.jsonl``. Cases ending at once on different nodes each write their own file, so no record is
ever torn or interleaved, and a ``harness run`` that was killed finds them on ``--resume``.

A multi-device case starts one launcher per node through ``srun`` (:class:`Srun`, :mod:`harness.run.slurm.node`);
its ranks write into the one case folder on the shared filesystem, and their results merge from there.

    sbatch ... CASE_DIR/job.sh    # which runs: python -m harness.run.slurm.job CASE_DIR
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from harness.config import Case
from harness.measure.environment import host_environment
from harness.results.records import write_record
from harness.run.case_run import Work, measure
from harness.run.launchers import Launcher, launcher_for
from harness.run.launchers.ranks import merge_ranks
from harness.run.progress import Display

__all__ = ["JOB_FILE", "RECORD_FILE", "Srun", "choose", "slurm_facts", "main"]

#: In the case folder: what the job runs (written by ``harness run``) and the record it leaves.
JOB_FILE, RECORD_FILE = "job.json", "record.json"


class Srun(Launcher):
    """``srun``, one task per node, each becoming ``inner`` (the case's own launcher) for its node's devices."""

    name = "srun"
    help = "srun: one of the case's own launchers per node of the Slurm allocation"

    def __init__(self, inner: Launcher) -> None:
        self.inner = inner

    def command(self, case: Case, case_file: Path, result_file: Path,
                case_dir: Path) -> tuple[list[str], dict[str, str]]:
        n = case.settings.nodes
        # a step does not inherit the job's CPUs per task (Slurm 22.05+): the launcher's ranks need all of them
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        return ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                *([f"--cpus-per-task={cpus}"] if cpus else []), sys.executable, "-m", "harness.run.slurm.node",
                self.inner.name, str(case_file), str(result_file), str(case_dir)], {}

    def collect(self, case: Case, result_file: Path, case_dir: Path) -> dict[str, Any] | None:
        return merge_ranks(case, result_file, case_dir, every_node=True)


def choose(case: Case, info: dict[str, Any]) -> Launcher:
    """The case's own launcher; a multi-device one through :class:`Srun`."""
    inner = launcher_for(case, info)
    return Srun(inner) if inner.multi_device else inner


def slurm_facts(environ: dict[str, str]) -> dict[str, Any]:
    """What the job knows of its allocation: job id, nodes, tasks, node list, partition, CPUs on this node."""
    def number(key: str) -> int | None:
        value = environ.get(key, "").split("(")[0]
        return int(value) if value.isdigit() else None
    return {"job_id": environ.get("SLURM_JOB_ID"), "nodes": number("SLURM_JOB_NUM_NODES"),
            "tasks": number("SLURM_NTASKS"), "node_list": environ.get("SLURM_JOB_NODELIST"),
            "partition": environ.get("SLURM_JOB_PARTITION"), "cpus_on_node": number("SLURM_CPUS_ON_NODE"),
            "batch_host": environ.get("SLURMD_NODENAME")}


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # Slurm's SIGTERM (time limit, scancel, preemption): stop the case's processes


def main(argv: list[str]) -> int:
    case_dir = Path(argv[0]).resolve()
    job = json.loads((case_dir / JOB_FILE).read_text())
    work = Work(Case.from_dict(job["case"]), int(job["repeat"]), case_dir, job["label"])
    signal.signal(signal.SIGTERM, _stop)
    display = Display(sys.stdout, quiet=False)
    try:
        record = measure(work, Path(job["run_dir"]), job["suite"], tuple(job["selection"]), host_environment(),
                         display, None, choose)
    except KeyboardInterrupt:
        print("harness: Slurm stopped the job before the case ended; harness run records Slurm's state and reason",
              flush=True)
        return 143
    record["env"]["slurm"] = slurm_facts(dict(os.environ))
    write_record(case_dir / RECORD_FILE, record)
    print(f"harness: {work.label}: {record['status']}; record written to {case_dir / RECORD_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
