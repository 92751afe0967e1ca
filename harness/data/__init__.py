"""data: datasets without a framework: the same files, pixels and order for every backend.

Class folders and image files (``folders``) and their check when a suite loads (``load_checks``), the manifest
that scans a split once (``manifest``), a split as a case reads it (``splits``), sample orders and shards
(``orders``), synthetic batches (``synthetic``), one image to a normalised array (``images``), host batches for a
backend without a pipeline of its own (``host_batches``) and a tiny generated dataset (``tiny``).

May import: the foundation, :mod:`harness.measure` and :mod:`harness.models`; Pillow and NumPy.
"""
