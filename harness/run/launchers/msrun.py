"""``msrun``: ``python -m mindspore.parallel.cluster.run`` with one worker per device (mindspore.communication:
HCCL on Ascend, NCCL on GPU, MindSpore's own on CPU). The first worker it reports exiting is the rank at fault."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.config import Case
from harness.run.launchers.base import Launcher
from harness.run.launchers.ranks import rendezvous_port

__all__ = ["Msrun"]


class Msrun(Launcher):
    name = "msrun"
    help = "mindspore.parallel.cluster.run, one worker per device"

    def command(self, case: Case, case_file: Path, result_file: Path,
                case_dir: Path) -> tuple[list[str], dict[str, str]]:
        s = case.settings
        env = {"HARNESS_LAUNCHED": "1",
               # msrun starts workers with the `python` found on PATH: make it this interpreter
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        if s.rank_table_file:
            env["RANK_TABLE_FILE"] = str(Path(s.rank_table_file).resolve())
        argv = [sys.executable, "-m", "mindspore.parallel.cluster.run", f"--worker_num={s.devices * s.nodes}",
                f"--local_worker_num={s.devices}", f"--master_addr={s.master_addr}",
                f"--master_port={rendezvous_port(s)}", f"--node_rank={s.node_rank}", f"--log_dir={case_dir / 'ranks'}",
                "--join=True", f"--cluster_time_out={int(min(s.timeout, 86400))}",
                str(Path(__file__).resolve().parents[1] / "_worker_main.py"), str(case_file), str(result_file)]
        return argv, env
