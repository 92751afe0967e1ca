"""backends: the contract between the core and a framework, and the checks that a backend keeps it.

The hook specs (``hookspecs``), finding and loading one backend and which hooks it must implement (``loading``),
the core's answers to the hooks a backend leaves out (``defaults``), named NumPy arrays in the neutral ``.npz``
(``arrays``), checks of what hooks return (``hook_checks``), ``harness check-backend`` (``conformance``,
``conformance_checks``, and ``golden``: what the network computes against the NumPy reference and shipped golden
values), asking a backend in a child process what it supports (``probe``, ``child``),
cross-framework parity (``parity``), training trajectories side by side (``trajectory``) and weight conversion
(``convert``).

May import: the foundation, :mod:`harness.measure`, :mod:`harness.models` and :mod:`harness.data`; pluggy.
"""
