"""results: what a run leaves behind and what people read from it.

Append-only JSON Lines records (``records``); the rules of which settings identify a case and which measurement
represents it (``case_rules``); records as a pandas frame (``frame``); the analysis tables both reports show
(``tables``), whether backends' or runs' top-1 over seeds is equivalent (``equivalence``), the markdown report
(``report``, with its charts: ``charts``, and its profile section:
``profile_report``) and the HTML one (``html``, its page: ``html_page``, its charts: ``html_charts``); published
numbers beside measured ones (``published``, ``references``); how fair a cross-framework ratio is, from the
fairness benchmark's file (``fairness``); ``harness compare`` (``compare``, its tests:
``significance``, its text: ``compare_report``), ``harness history`` (``history``), MLPerf logs (``mllog``) and
training trajectories side by side on file and in the HTML report (``trajectories``).

May import: the foundation, :mod:`harness.measure`, :mod:`harness.models`, :mod:`harness.data` and
:mod:`harness.backends`; pandas, tabulate, plotly, matplotlib. Never :mod:`harness.run`: a report reads records,
not the code that wrote them.
"""
