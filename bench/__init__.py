"""Benchmarks and the fault suite, run by hand (bench/README.md)."""
