"""Benchmarks of what Ensemble adds on top of its model servers (speed, load, memory, cold start)."""
