"""Benchmarks (not tests) and the handbook protocol: `fraudloop bench …`, figures in RESULTS.md."""
