"""Timing: warm up, then the median of repeated runs, ours and the peer's interleaved so that
both see the same machine load."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from nemocore.bench.cases import BenchCase


@dataclass
class BenchResult:
    name: str
    shape: str
    device: str
    peer: str
    ours_ms: float  # median
    peer_ms: float  # median
    speedup: float  # peer_ms / ours_ms (> 1: we are faster)
    ours_gbps: float = 0.0  # effective bandwidth, when the case knows its bytes
    ours_gflops: float = 0.0  # arithmetic rate, when the case knows its FLOPs

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(
    fn: Callable[[], object], device: str, *, min_time_s: float = 0.2, max_reps: int = 50
) -> list[float]:
    """Seconds per call, one sample per repetition, after one warm-up call."""
    fn()
    _sync(device)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_reps and (
        len(samples) < 3 or time.perf_counter() - start < min_time_s
    ):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t0)
    return samples


def run_case(case: BenchCase, *, rounds: int = 3, min_time_s: float = 0.2) -> BenchResult:
    """Times ours and the peer in alternating rounds and returns the medians."""
    ours_fn, peer_fn = case.setup()
    ours: list[float] = []
    peer: list[float] = []
    for _ in range(rounds):
        ours += time_fn(ours_fn, case.device, min_time_s=min_time_s / rounds)
        peer += time_fn(peer_fn, case.device, min_time_s=min_time_s / rounds)
    ours_s, peer_s = statistics.median(ours), statistics.median(peer)
    gbps = case.bytes_moved / ours_s / 1e9 if case.bytes_moved else 0.0
    return BenchResult(
        case.name,
        case.shape,
        case.device,
        case.peer,
        ours_s * 1e3,
        peer_s * 1e3,
        peer_s / ours_s,
        gbps,
        case.flops / ours_s / 1e9 if case.flops else 0.0,
    )
