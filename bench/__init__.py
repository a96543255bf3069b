"""Benchmarks (`make bench`): numbers go to bench/results/*.md, never into timed tests."""
