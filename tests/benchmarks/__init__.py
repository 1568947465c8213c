"""Performance benchmarks (not collected by pytest: files are named ``bench_*.py``).

Run all five with ``python -m tests.benchmarks [--quick] [--only NAME]`` (``make bench``); each
prints a table and writes ``var/bench/<name>.json``. See docs/performance.md.
"""
