"""Helpers for tests, doctests and benchmarks: nothing the pipeline itself runs imports them.

``fake``: synthetic atlases written through the store's own writers (no model run), for the
site's tests and ``scripts/bench_site.py``.
"""
