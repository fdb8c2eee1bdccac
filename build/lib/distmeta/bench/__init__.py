"""Benchmarks: measurements taken in one run against a baseline, never timed assertions."""
