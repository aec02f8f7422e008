"""Benchmark harness: the result schema and where results go (results.py), one measurement path
(runner.py), RD plots and BD tables (plot.py), and the suites themselves (suites/, run by
``neurocodec bench <suite>`` from a checkout or an installed wheel)."""
