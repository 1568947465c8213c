"""Performance benchmarks (not collected by pytest: files are named ``bench_*.py``).

Run them all with ``python -m tests.benchmarks [--quick] [--only NAME]`` (``make bench``); each
prints a table and writes ``var/bench/<name>.json``. See docs/performance.md.
"""
