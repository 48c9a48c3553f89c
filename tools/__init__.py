"""Offline tools: fixtures, corpus synthesis, training, export, benchmarks (may need torch)."""
