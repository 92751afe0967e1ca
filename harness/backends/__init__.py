"""backends: the contract between the core and a framework, and the checks that a backend keeps it.

The hook specs (``hookspecs``), finding and loading one backend (``loading``), checks of what hooks return
(``hook_checks``), ``harness check-backend`` (``conformance``, ``conformance_checks``), asking a backend in a child
process what it supports (``probe``, ``child``), cross-framework parity (``parity``) and weight conversion
(``convert``).

May import: the foundation, :mod:`harness.measure`, :mod:`harness.models` and :mod:`harness.data`; pluggy.
"""
