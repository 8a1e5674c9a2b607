"""The CPU grouped GEMM kernels called directly (``_C.grouped_mm``, ``_C.grouped_mm_wgrad``),
against a float64 loop over experts (kernels.md 3.2).

Tolerances. fp32 and fp64: each output element is a k-term dot product, whose rounding error
grows like sqrt(k) times the 2-norm of its terms, so an element may be off by at most
``rtol * sqrt(k) * sqrt(sum_k a_ik^2 b_kj^2)`` with rtol 1e-5 (fp32, about 170 ulp) or 1e-13
(fp64). One missing or wrong term is off by about norm / sqrt(k), far outside that for any k
tested. bf16/fp16: the kernel's error against the float64 truth is at most twice that of torch
computing the same product in the low precision (kernels.md 0).

Letters: T rows, E experts, k reduction width of the forward, n output width.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import CPU_ISAS, assert_close_to_truth, cpu_isa
from nemocore import _C

RTOL = {torch.float32: 1e-5, torch.float64: 1e-13}
LOW = [torch.bfloat16, torch.float16]

# (rows per expert, k, n): odd and tiny widths, widths past the 256-wide K slice and the column
# tile, an expert past the 192-row block, empty experts, one expert, no rows at all.
CASES = [
    ([5, 0, 13, 1], 17, 3),
    ([1], 1, 1),
    ([7, 3], 3, 17),
    ([40, 0, 0, 71, 9], 300, 45),
    ([200, 13], 37, 530),
    ([0, 0, 0], 5, 7),
    ([0, 260, 1], 600, 33),
    ([3, 0, 2], 1, 40),
]


def offsets_of(sizes: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()], dtype=torch.int64)


def spans(sizes: list[int]) -> list[tuple[int, int]]:
    off = offsets_of(sizes).tolist()
    return list(zip(off[:-1], off[1:]))


def make_a(rows: int, k: int, dtype, layout: str) -> torch.Tensor:
    """a: (rows, k), contiguous, column-major, or every other column of a wider matrix."""
    if layout == "transposed":
        return torch.randn(k, rows).to(dtype).T
    if layout == "strided":
        return torch.randn(rows, 2 * k + 1).to(dtype)[:, 1::2]
    return torch.randn(rows, k).to(dtype)


def make_b(E: int, k: int, n: int, dtype, trans_b: bool, layout: str) -> torch.Tensor:
    """b as the kernel takes it: (E, k, n), or (E, n, k) with trans_b."""
    shape = (E, n, k) if trans_b else (E, k, n)
    if layout == "transposed":  # the last two dims' storage swapped
        return torch.randn(E, shape[2], shape[1]).to(dtype).transpose(1, 2)
    if layout == "strided":  # neither dim unit-stride
        full = torch.randn(E, 2 * shape[1], 3 * shape[2]).to(dtype)
        return full[:, ::2, ::3]
    return torch.randn(*shape).to(dtype)


def run_fwd(a, b, sizes, trans_b, threads=2) -> torch.Tensor:
    out = torch.full((a.shape[0], b.shape[1] if trans_b else b.shape[2]), float("nan"))
    out = out.to(a.dtype)
    _C.grouped_mm(a, b, offsets_of(sizes), out, trans_b, threads, 0)
    return out


def run_wgrad(x, y, sizes, threads=2) -> torch.Tensor:
    out = torch.full((len(sizes), x.shape[1], y.shape[1]), float("nan")).to(x.dtype)
    _C.grouped_mm_wgrad(x, y, offsets_of(sizes), out, threads, 0)
    return out


def ref_fwd(a, b, sizes, trans_b, dtype=torch.float64):
    """The loop over experts in ``dtype``; with float64 also the per-element error scale."""
    bk = b.transpose(1, 2) if trans_b else b
    out = torch.zeros(a.shape[0], bk.shape[2], dtype=dtype)
    scale = torch.zeros_like(out, dtype=torch.float64)
    for e, (s, t) in enumerate(spans(sizes)):
        ae, be = a[s:t].to(dtype), bk[e].to(dtype)
        out[s:t] = ae @ be
        scale[s:t] = (ae.double() ** 2 @ be.double() ** 2).sqrt()
    return out, scale


def ref_wgrad(x, y, sizes, dtype=torch.float64):
    out = torch.zeros(len(sizes), x.shape[1], y.shape[1], dtype=dtype)
    scale = torch.zeros_like(out, dtype=torch.float64)
    for e, (s, t) in enumerate(spans(sizes)):
        xe, ye = x[s:t].to(dtype), y[s:t].to(dtype)
        out[e] = xe.T @ ye
        scale[e] = (xe.double().T ** 2 @ ye.double() ** 2).sqrt()
    return out, scale


def assert_within(out, truth, scale, reduction: int, dtype) -> None:
    assert not out.isnan().any(), "an output element was not written"
    bound = RTOL[dtype] * math.sqrt(max(reduction, 1)) * scale + 1e-300
    err = (out.double() - truth).abs()
    worst = (err / bound).max().item() if err.numel() else 0.0
    assert worst <= 1.0, f"error {worst:.3g}x the bound"


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_grouped_mm_exact_dtypes(isa, dtype, trans_b, case):
    sizes, k, n = case
    a = make_a(sum(sizes), k, dtype, "contiguous")
    b = make_b(len(sizes), k, n, dtype, trans_b, "contiguous")
    with cpu_isa(isa):
        out = run_fwd(a, b, sizes, trans_b)
    truth, scale = ref_fwd(a, b, sizes, trans_b)
    assert_within(out, truth, scale, k, dtype)


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("a_layout", ["transposed", "strided"])
@pytest.mark.parametrize("b_layout", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("trans_b", [False, True])
def test_grouped_mm_strided_operands(isa, a_layout, b_layout, trans_b):
    sizes, k, n = [30, 0, 201, 5], 290, 37
    a = make_a(sum(sizes), k, torch.float32, a_layout)
    b = make_b(len(sizes), k, n, torch.float32, trans_b, b_layout)
    with cpu_isa(isa):
        out = run_fwd(a, b, sizes, trans_b)
    truth, scale = ref_fwd(a, b, sizes, trans_b)
    assert_within(out, truth, scale, k, torch.float32)


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[4], CASES[6]])
def test_grouped_mm_low_precision(isa, dtype, trans_b, case):
    sizes, k, n = case
    a = make_a(sum(sizes), k, dtype, "strided")
    b = make_b(len(sizes), k, n, dtype, trans_b, "contiguous")
    with cpu_isa(isa):
        out = run_fwd(a, b, sizes, trans_b)
    assert out.dtype == dtype
    truth, _ = ref_fwd(a, b, sizes, trans_b)
    lowp, _ = ref_fwd(a, b, sizes, trans_b, dtype=dtype)
    assert_close_to_truth(out, truth, lowp)


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_wgrad_exact_dtypes(isa, dtype, case):
    sizes, m, n = case
    x = make_a(sum(sizes), m, dtype, "contiguous")
    y = make_a(sum(sizes), n, dtype, "contiguous")
    with cpu_isa(isa):
        out = run_wgrad(x, y, sizes)
    truth, scale = ref_wgrad(x, y, sizes)
    assert_within(out, truth, scale, max(sizes, default=0), dtype)
    for e, rows in enumerate(sizes):
        if rows == 0:
            assert (out[e] == 0).all(), "an expert without rows must give zeros"


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("x_layout", ["transposed", "strided"])
@pytest.mark.parametrize("y_layout", ["transposed", "strided"])
def test_wgrad_strided_operands(isa, x_layout, y_layout):
    sizes, m, n = [30, 0, 290, 5], 37, 45
    x = make_a(sum(sizes), m, torch.float32, x_layout)
    y = make_a(sum(sizes), n, torch.float32, y_layout)
    with cpu_isa(isa):
        out = run_wgrad(x, y, sizes)
    truth, scale = ref_wgrad(x, y, sizes)
    assert_within(out, truth, scale, max(sizes), torch.float32)


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[6]])
def test_wgrad_low_precision(isa, dtype, case):
    sizes, m, n = case
    x = make_a(sum(sizes), m, dtype, "contiguous")
    y = make_a(sum(sizes), n, dtype, "strided")
    with cpu_isa(isa):
        out = run_wgrad(x, y, sizes)
    truth, _ = ref_wgrad(x, y, sizes)
    lowp, _ = ref_wgrad(x, y, sizes, dtype=dtype)
    assert_close_to_truth(out, truth, lowp)


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_results_do_not_depend_on_threads(isa, dtype):
    """Bitwise: each element is one thread's fixed-order sum, however the blocks are dealt."""
    sizes, k, n = [0, 250, 3, 40, 1], 530, 300
    a = make_a(sum(sizes), k, dtype, "contiguous")
    b = make_b(len(sizes), k, n, dtype, True, "contiguous")
    y = make_a(sum(sizes), n, dtype, "contiguous")
    old = torch.get_num_threads()
    with cpu_isa(isa):
        fwd = [run_fwd(a, b, sizes, True, threads) for threads in (1, 2, 3, 8)]
        wgrad = [run_wgrad(a, y, sizes, threads) for threads in (1, 2, 3, 8)]
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                fwd.append(run_fwd(a, b, sizes, True, torch.get_num_threads()))
                wgrad.append(run_wgrad(a, y, sizes, torch.get_num_threads()))
        finally:
            torch.set_num_threads(old)
    for other in fwd[1:]:
        assert torch.equal(fwd[0], other)
    for other in wgrad[1:]:
        assert torch.equal(wgrad[0], other)
