"""results: what a run leaves behind and what people read from it.

Append-only JSON Lines records (``records``), records as a pandas frame (``frame``), markdown and HTML reports
(``report``, ``html``, ``charts``), published numbers beside measured ones (``published``, ``references``),
``harness compare`` (``compare``), ``harness history`` (``history``) and MLPerf logs (``mllog``).

May import: the foundation, :mod:`harness.measure`, :mod:`harness.models`, :mod:`harness.data` and
:mod:`harness.backends`; pandas, tabulate, plotly, matplotlib. Never :mod:`harness.run`: a report reads records,
not the code that wrote them.
"""
