"""Kernel benchmarks shared by ``nemocore bench`` and ``benches/`` (pytest-benchmark).

Each case times one of our ops and the peer the issue names, on the same inputs, in the same
run, and reports medians and their ratio (these machines are shared and noisy: medians and
ratios, never single runs).
"""

from nemocore.bench.cases import CASES, BenchCase
from nemocore.bench.runner import BenchResult, run_case, time_fn

__all__ = ["CASES", "BenchCase", "BenchResult", "run_case", "time_fn"]
