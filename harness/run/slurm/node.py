"""One node's share of a multi-device case under Slurm: started by ``srun`` (one task per node), it takes the
rendezvous from the allocation - this node's rank (``SLURM_NODEID``), node 0's address (the first host of
``SLURM_JOB_NODELIST``, as Slurm reaches it), a port from the job id unless the suite set ``master_port`` - and
becomes the case's own launcher (torchrun, msrun, ...) for this node's devices.

    srun --nodes=N --ntasks-per-node=1 python -m harness.run.slurm.node LAUNCHER CASE.json RESULT.json CASE_DIR
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from harness.config import Case
from harness.errors import HarnessError, one_line
from harness.run.launchers import get_launcher
from harness.run.slurm.scheduler import hostnames, node_address

__all__ = ["rendezvous", "main"]

#: Rendezvous ports are taken from the job id in [BASE, BASE + SPAN): two jobs sharing a node do not collide.
PORT_BASE, PORT_SPAN = 20000, 20000


def rendezvous(case: Case, environ: dict[str, str]) -> Case:
    """``case`` as this node runs it: node rank, master address and port from the Slurm allocation."""
    s = case.settings
    node_rank = int(environ["SLURM_NODEID"])
    first = hostnames(environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"])[0]
    port = s.master_port or PORT_BASE + int(environ["SLURM_JOB_ID"]) % PORT_SPAN
    return dataclasses.replace(case, settings=dataclasses.replace(
        s, node_rank=node_rank, master_addr=node_address(first), master_port=port))


def main(argv: list[str]) -> int:
    launcher, case_file, result_file, case_dir = argv
    try:
        case = rendezvous(Case.from_dict(json.loads(Path(case_file).read_text())), dict(os.environ))
        node_file = Path(case_dir) / f"case.node{case.settings.node_rank}.json"
        node_file.write_text(json.dumps(case.to_dict(), indent=1))
        cmd, env = get_launcher(launcher).command(case, node_file, Path(result_file), Path(case_dir))
    except (HarnessError, KeyError, ValueError, OSError) as exc:
        print(f"harness: node {os.environ.get('SLURMD_NODENAME', '?')}: {one_line(str(exc))}", file=sys.stderr)
        return 2
    print(f"harness: node {os.environ.get('SLURMD_NODENAME', '?')} is node_rank {case.settings.node_rank} of "
          f"{case.settings.nodes}; rendezvous at {case.settings.master_addr}:{case.settings.master_port}", flush=True)
    os.execvpe(cmd[0], cmd, {**os.environ, **env})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
