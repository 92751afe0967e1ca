"""slurm: running a suite's cases as Slurm jobs (``harness run --on slurm``).

The suite's ``cluster:`` section and what each job asks for (``cluster``); the scheduler's commands and the states
it reports, from ``sacct`` where the cluster keeps accounting and ``scontrol``/``squeue`` where it does not
(``scheduler``); a job's own process on its first node, which runs the case and writes its record file (``job``);
and one launcher per node started through ``srun`` with the rendezvous taken from the allocation (``node``). The
submitting side, which places, watches, cancels and resumes the jobs and assembles the run's results, is the
``slurm`` executor (:mod:`harness.run.executors.slurm`).

May import: everything in :mod:`harness.run` but its executors, and the foundation below it. It runs the Slurm
commands (``sbatch``, ``srun``, ``squeue``, ``scontrol``, ``sacct``, ``scancel``) as programs; no Python binding.
"""
