"""Shared fixtures: the devices to test on and tolerance helpers.

CPU tests always run. CUDA tests run where a GPU is visible and _C has CUDA kernels, and skip
cleanly otherwise (CI has no GPU).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import nemocore  # noqa: F401  (loads torch and the extensions in the supported order)
from nemocore import _native


def cuda_available() -> bool:
    return torch.cuda.is_available() and _native.has_cuda_kernels()


requires_cuda = pytest.mark.skipif(
    not cuda_available(), reason="needs a CUDA GPU and _C built with CUDA kernels"
)

DEVICES = ["cpu", pytest.param("cuda", marks=[requires_cuda, pytest.mark.cuda])]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_close_to_truth(
    out: torch.Tensor,
    truth: torch.Tensor,
    lowp: torch.Tensor,
    factor: float = 2.0,
    atol: float = 1e-6,
) -> None:
    """Low-precision check (kernels.md 0): the kernel's error against a float64 truth must be
    at most ``factor`` times the error of plain PyTorch computing the same function in the
    low precision (``lowp``), plus ``atol``."""
    truth = truth.double()
    ours = (out.double() - truth).abs().max().item() if out.numel() else 0.0
    theirs = (lowp.double() - truth).abs().max().item() if lowp.numel() else 0.0
    assert ours <= factor * theirs + atol, f"error {ours:.3g} vs plain torch {theirs:.3g}"


CPU_ISAS = ["base", "avx2", "avx512"]


@contextlib.contextmanager
def cpu_isa(isa: str):
    """Runs the CPU kernels at ISA level ``isa`` inside the block (skipping the test where the
    build or the CPU lacks it) and restores the best level afterwards."""
    kernels = _native.kernels()
    info = kernels.build_info()
    if isa not in info["cpu_isas_compiled"]:
        pytest.skip(f"{isa} not compiled on this platform")
    best = info["cpu_isa_best"]
    if CPU_ISAS.index(isa) > CPU_ISAS.index(best):
        pytest.skip(f"this CPU lacks {isa}")
    kernels.set_cpu_isa(isa)
    try:
        yield
    finally:
        kernels.set_cpu_isa(best)
