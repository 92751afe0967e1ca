"""measure: what a timing is worth and what else the host did while it ran.

Per-step statistics (``steps``), intervals over repetitions (``intervals``), the noise verdict of a case (``noise``),
the energy meter over a timed region (``energy``) and the devices' counters it reads (``energy_sources``), the
profiled window of training steps (``profiles``) and its ops grouped into neutral categories (``op_categories``),
readers of the host state (``host``), ``harness doctor`` (``doctor``), the host facts of a record (``environment``)
and the peak FLOP/s of known devices (``peaks``).

May import: the foundation (``harness.errors``, ``harness.config``, ``harness.files``, ``harness.registry``,
``harness.dist``) and NumPy, SciPy, pandas. Nothing else of harness: every other subpackage may use this one.
"""
