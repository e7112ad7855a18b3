"""Benchmarks of `inboxleads add` against the sandbox server: run `benchmarks/run.py`."""
