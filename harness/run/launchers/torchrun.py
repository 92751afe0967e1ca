"""``torchrun``: ``python -m torch.distributed.run`` with one worker per device (PyTorch DDP; process group gloo
on cpu, nccl on cuda, hccl on npu). Its "Root Cause" summary names the rank that failed first."""
from __future__ import annotations

import sys
from pathlib import Path

from harness.config import Case
from harness.run.launchers.base import Launcher
from harness.run.launchers.ranks import rendezvous_port, threads_per_rank

__all__ = ["Torchrun"]


class Torchrun(Launcher):
    name = "torchrun"
    help = "torch.distributed.run, one worker per device (DDP)"

    def command(self, case: Case, case_file: Path, result_file: Path,
                case_dir: Path) -> tuple[list[str], dict[str, str]]:
        s = case.settings
        argv = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={s.devices}",
                f"--nnodes={s.nodes}", f"--node-rank={s.node_rank}", f"--master-addr={s.master_addr}",
                f"--master-port={rendezvous_port(s)}", f"--log-dir={case_dir / 'ranks'}", "--tee=3",
                "--max-restarts=0", "-m", "harness.run.worker", str(case_file), str(result_file)]
        # torchrun sets OMP_NUM_THREADS=1 for every worker unless it is given one
        return argv, {"HARNESS_LAUNCHED": "1", "OMP_NUM_THREADS": str(threads_per_rank(s.threads, s.devices))}
