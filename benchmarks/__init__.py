"""Benchmark scripts (run as files or with ``python -m benchmarks.<name>``: see README.md)."""
