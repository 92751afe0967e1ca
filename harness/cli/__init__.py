"""cli: the ``harness`` command (``main``) and its commands that inspect rather than run (``inspect``).

May import: anything in harness.
"""
