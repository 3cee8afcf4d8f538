"""pm500 benchmarks: ratios against a baseline measured in the same run (see docs/BENCHMARKS.md)."""
