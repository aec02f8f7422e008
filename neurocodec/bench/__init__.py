"""Benchmark harness: result schema (results.py); runners and plots build on it."""
