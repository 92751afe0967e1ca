"""Executors by name: where and how a run's cases are run. ``local``: one after another in this machine's process
tree; ``slurm``: each as a Slurm job (:mod:`harness.run.slurm`). A package adds one with an entry point in the group
``harness.executors`` whose object is an :class:`~harness.run.executors.base.Executor` subclass.

May import: everything in :mod:`harness.run` (nothing there imports this package but the runner).
"""
from __future__ import annotations

from harness.registry import Registry
from harness.run.executors.base import Executor, Plan

__all__ = ["Executor", "Plan", "EXECUTORS", "get_executor"]

#: Executors by name; a package adds one under the entry-point group ``harness.executors``.
EXECUTORS: Registry[Executor] = Registry("executor", "harness.executors", Executor, {
    "local": "harness.run.executors.local:Local", "slurm": "harness.run.executors.slurm:Slurm"})
get_executor = EXECUTORS.get
