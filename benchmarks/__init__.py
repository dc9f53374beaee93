"""Speed benchmarks (not tests): run through `fraudloop bench …`, results in RESULTS.md."""
