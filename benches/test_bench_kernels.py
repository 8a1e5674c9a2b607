"""Kernel benchmarks: ours against the peer of each case, in the same run.

    pytest benches --benchmark-only --benchmark-group-by=param:case

Speed is measured here, never asserted in tests/. GPU cases skip where no GPU is visible.
"""

from __future__ import annotations

import pytest
import torch

from nemocore.bench import CASES

pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")


def _case_id(case) -> str:
    return f"{case.name}[{case.shape}|{case.device}]"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("impl", ["nemocore", "peer"])
def test_kernel(benchmark, case, impl):
    if case.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    ours, peer = case.setup()
    fn = ours if impl == "nemocore" else peer
    benchmark.group = _case_id(case)
    benchmark.extra_info.update(peer=case.peer, impl=impl)
    if case.device == "cuda":

        def run():
            fn()
            torch.cuda.synchronize()

        benchmark.pedantic(run, rounds=20, warmup_rounds=2)
    else:
        benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
