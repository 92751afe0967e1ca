"""run: a suite from its file to its records.

Suite loading (``suite``, with its ``seeds:`` key in ``seeds``) and the load-time checks against what each backend
declares (``validate``); the runner, the parent's loop over cases (``runner``); launchers that start a case's
processes (``launchers``); the worker, a case's process (``worker``); scenarios, what a case does (``scenarios``);
the one timed loop (``loop``); checkpoints (``checkpoints``) and the terminal's progress (``progress``).

May import: everything in harness but :mod:`harness.cli`.
"""
