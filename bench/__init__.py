"""Benchmarks: each prints a table; run `python -m bench --help`."""
