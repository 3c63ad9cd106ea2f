"""The benchmark suite of tnc: ``make bench`` (see benchmarks/run.py)."""
