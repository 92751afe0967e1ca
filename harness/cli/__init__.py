"""cli: the ``harness`` command (``main``), its commands that inspect rather than run (``inspect``) and the model
contract's commands ``models`` and ``golden`` (``contract``).

May import: anything in harness.
"""
