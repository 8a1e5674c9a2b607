"""MoE ops (grouped GEMM, permute, unpermute) against the loop-over-experts references of
nemocore.ref and against torch's own grouped GEMM (kernels.md 3.2).

Tolerances: float64 to 1e-10; float32 to 1e-5 of the output's scale (one fp32 dot product per
element, up to a few hundred terms); bf16/fp16 at most 2x the error of plain PyTorch computing
the same product at that precision (``assert_close_to_truth``). Permute and unpermute move or
sum a handful of values and are compared exactly (permute) or to 1e-6 (unpermute, fp32 sums).
"""

from __future__ import annotations

import pytest
import torch

from conftest import CPU_ISAS, assert_close_to_truth, cpu_isa, requires_cuda
from nemocore import _native, ops, ref


def _cuda_moe_built() -> bool:
    return bool(_native.kernels().build_info().get("cuda_moe", False))


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                requires_cuda,
                pytest.mark.cuda,
                pytest.mark.skipif(not _cuda_moe_built(), reason="CUDA MoE kernels not built"),
            ],
        ),
    ]
)
def device(request) -> torch.device:
    return torch.device(request.param)


LOADS = {
    "uneven": [5, 0, 17, 1, 33, 0, 2],
    "empty_ends": [0, 9, 0, 0, 12, 0],
    "single_expert": [41],
    "all_empty": [0, 0, 0],
    "one_row_each": [1, 1, 1, 1],
}


def _operands(load, k, n, dtype, device, trans_b, strided=False):
    sizes = torch.tensor(load, dtype=torch.int64)
    T, E = int(sizes.sum()), len(load)
    if strided:  # every operand a non-contiguous view
        a = torch.randn(k, T, dtype=dtype, device=device).T
        b = torch.randn(E, k, n, dtype=dtype, device=device)[..., ::1]
        b = b.transpose(1, 2).contiguous().transpose(1, 2) if not trans_b else b.transpose(1, 2)
    else:
        a = torch.randn(T, k, dtype=dtype, device=device)
        b = torch.randn(*((E, n, k) if trans_b else (E, k, n)), dtype=dtype, device=device)
    return a, b, sizes


def _scale(t: torch.Tensor) -> float:
    return max(t.abs().max().item(), 1.0) if t.numel() else 1.0


# ---- grouped_mm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("load", list(LOADS), ids=list(LOADS))
@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("shape", [(16, 24), (3, 1), (37, 29)], ids=lambda s: f"k{s[0]}n{s[1]}")
def test_grouped_mm_fp32(device, load, trans_b, shape):
    k, n = shape
    a, b, sizes = _operands(LOADS[load], k, n, torch.float32, device, trans_b)
    out = ops.grouped_mm(a, b, sizes, trans_b=trans_b)
    truth = ref.grouped_mm(a.double(), b.double(), sizes, trans_b)
    assert out.shape == truth.shape
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), truth, rtol=0, atol=1e-5 * _scale(truth))


@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
def test_grouped_mm_strided_operands(device, trans_b):
    a, b, sizes = _operands(LOADS["uneven"], 20, 12, torch.float32, device, trans_b, strided=True)
    assert not a.is_contiguous()
    assert not b.is_contiguous()
    out = ops.grouped_mm(a, b, sizes, trans_b=trans_b)
    truth = ref.grouped_mm(a.double(), b.double(), sizes, trans_b)
    torch.testing.assert_close(out.double(), truth, rtol=0, atol=1e-5 * _scale(truth))


def test_grouped_mm_float64_exact(device):
    a, b, sizes = _operands(LOADS["uneven"], 19, 7, torch.float64, device, False)
    truth = ref.grouped_mm(a, b, sizes)
    torch.testing.assert_close(ops.grouped_mm(a, b, sizes), truth, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
def test_grouped_mm_low_precision(device, dtype, trans_b):
    a, b, sizes = _operands(LOADS["uneven"], 64, 40, dtype, device, trans_b)
    out = ops.grouped_mm(a, b, sizes, trans_b=trans_b)
    assert out.dtype == dtype
    truth = ref.grouped_mm(a.double(), b.double(), sizes, trans_b)
    # Plain PyTorch at that precision: one matmul per expert in the low dtype.
    parts, start = [], 0
    for e, rows in enumerate(sizes.tolist()):
        w = b[e].T if trans_b else b[e]
        parts.append((a[start : start + rows].float() @ w.float()).to(dtype))
        start += rows
    assert_close_to_truth(out, truth, torch.cat(parts))


def test_grouped_mm_matches_torch_grouped_mm():
    """An independent oracle: torch's own grouped GEMM (runs on the CPU since torch 2.14)."""
    if not hasattr(torch, "_grouped_mm"):
        pytest.skip("this torch has no _grouped_mm")
    a, b, sizes = _operands([7, 0, 12, 3], 32, 16, torch.float32, "cpu", False)
    offs = torch.cumsum(sizes, 0).to(torch.int32)
    theirs = torch._grouped_mm(a, b, offs=offs)
    torch.testing.assert_close(ops.grouped_mm(a, b, sizes), theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("load", ["uneven", "empty_ends", "single_expert"])
def test_grouped_mm_backward(device, trans_b, load):
    a, b, sizes = _operands(LOADS[load], 13, 9, torch.float32, device, trans_b)
    a.requires_grad_(), b.requires_grad_()
    out = ops.grouped_mm(a, b, sizes, trans_b=trans_b)
    g = torch.randn_like(out)
    da, db = torch.autograd.grad(out, (a, b), g)
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    ta, tb = torch.autograd.grad(ref.grouped_mm(a64, b64, sizes, trans_b), (a64, b64), g.double())
    torch.testing.assert_close(da.double(), ta, rtol=0, atol=1e-5 * _scale(ta))
    torch.testing.assert_close(db.double(), tb, rtol=0, atol=1e-5 * _scale(tb))
    if load == "empty_ends":  # experts with no rows get an exactly zero weight gradient
        assert db[0].abs().max() == 0
        assert db[2].abs().max() == 0


@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
def test_grouped_mm_gradcheck(trans_b):
    a, b, sizes = _operands([3, 0, 2, 4], 5, 3, torch.float64, "cpu", trans_b)
    a.requires_grad_(), b.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ops.grouped_mm(a, b, sizes, trans_b), (a, b))


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_grouped_mm_isa_variants_and_threads_agree(isa):
    a, b, sizes = _operands([40, 3, 0, 77, 9], 70, 50, torch.float32, "cpu", True)
    threads = torch.get_num_threads()
    base = ops.grouped_mm(a, b, sizes, trans_b=True)
    with cpu_isa(isa):
        variant = ops.grouped_mm(a, b, sizes, trans_b=True)
        torch.set_num_threads(1)
        try:
            one_thread = ops.grouped_mm(a, b, sizes, trans_b=True)
        finally:
            torch.set_num_threads(threads)
        multi = ops.grouped_mm(a, b, sizes, trans_b=True)
    truth = ref.grouped_mm(a.double(), b.double(), sizes, True)
    torch.testing.assert_close(variant.double(), truth, rtol=0, atol=1e-5 * _scale(truth))
    torch.testing.assert_close(variant, base, rtol=1e-5, atol=1e-5)
    assert torch.equal(one_thread, multi)  # a thread count never changes a result


# ---- grouped_mm with gathered rows (the permute fused into the GEMM's load) --------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("strided", [False, True], ids=["contig", "colmajor"])
def test_grouped_mm_gathered_equals_gather_then_gemm(device, dtype, trans_b, strided):
    T, E, k, K, N = 23, 6, 3, 24, 17
    ids = _routing(T, E, k, device)
    row_id_map, token_of_row, counts = ops.moe_sort(ids, E)
    x = torch.randn(T, K, dtype=dtype, device=device)
    if strided:  # column-major tokens
        x = x.T.contiguous().T
    b = torch.randn(*((E, N, K) if trans_b else (E, K, N)), dtype=dtype, device=device)
    fused = ops.grouped_mm(x, b, counts, trans_b=trans_b, a_rows=token_of_row)
    permuted, permute_map, _ = ops.moe_permute(x, ids, E)
    assert torch.equal(x[token_of_row], permuted)
    assert torch.equal(row_id_map, permute_map)
    unfused = ops.grouped_mm(permuted, b, counts, trans_b=trans_b)
    torch.testing.assert_close(fused, unfused, rtol=0, atol=0)


@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
def test_grouped_mm_gathered_backward(device, trans_b):
    T, E, k, K, N = 19, 5, 2, 12, 7
    ids = _routing(T, E, k, device)
    _, rows, counts = ops.moe_sort(ids, E)
    x = torch.randn(T, K, device=device, requires_grad=True)
    b = torch.randn(*((E, N, K) if trans_b else (E, K, N)), device=device, requires_grad=True)
    out = ops.grouped_mm(x, b, counts, trans_b=trans_b, a_rows=rows)
    g = torch.randn_like(out)
    dx, db = torch.autograd.grad(out, (x, b), g)
    x64, b64 = x.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    want = ref.grouped_mm(x64[rows], b64, counts, trans_b)
    tx, tb = torch.autograd.grad(want, (x64, b64), g.double())
    torch.testing.assert_close(dx.double(), tx, rtol=0, atol=1e-5 * _scale(tx))
    torch.testing.assert_close(db.double(), tb, rtol=0, atol=1e-5 * _scale(tb))


def test_grouped_mm_gathered_gradcheck_and_opcheck():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    rows, counts = torch.tensor([0, 5, 5, 2, 1, 0, 3]), torch.tensor([2, 0, 5])
    assert torch.autograd.gradcheck(
        lambda x, b: ops.grouped_mm(x, b, counts, trans_b=True, a_rows=rows), (x, b)
    )
    torch.library.opcheck(
        torch.ops.nemocore.grouped_mm_gathered.default,
        (x.detach().float(), rows, b.detach().float(), counts, True),
    )


def test_grouped_mm_gathered_bad_input():
    x, b = torch.randn(4, 8), torch.randn(2, 8, 3)
    with pytest.raises(ValueError, match="a_rows: entry 1 is 4, outside"):
        ops.grouped_mm(x, b, torch.tensor([1, 1]), a_rows=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="sums to 2, but a has 3 rows"):
        ops.grouped_mm(x, b, torch.tensor([1, 1]), a_rows=torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="a_rows: expected dtype"):
        ops.grouped_mm(x, b, torch.tensor([1, 1]), a_rows=torch.tensor([0.0, 1.0]))


@requires_cuda
@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_moe_built(), reason="CUDA MoE kernels not built")
@pytest.mark.parametrize("gather", [False, True], ids=["rows", "gathered"])
def test_cuda_hopper_kernel_matches_portable_kernel(monkeypatch, gather):
    """On an H100/H200 the wgmma kernel runs; NEMOCORE_WGMMA=0 forces the mma.sync one."""
    T, E, k, K, N = 3000, 16, 4, 1024, 776
    ids = _routing(T, E, k, "cuda")
    _, rows, counts = ops.moe_sort(ids, E)
    x = torch.randn(T, K, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(E, N, K, device="cuda", dtype=torch.bfloat16)
    a = x if gather else x[rows]
    kwargs = {"a_rows": rows} if gather else {}
    hopper = ops.grouped_mm(a, b, counts, trans_b=True, **kwargs)
    monkeypatch.setenv("NEMOCORE_WGMMA", "0")
    portable = ops.grouped_mm(a, b, counts, trans_b=True, **kwargs)
    truth = ref.grouped_mm(x[rows].double(), b.double(), counts, True)
    for got in (hopper, portable):  # both one bf16 rounding of an fp32 sum
        torch.testing.assert_close(got.double(), truth, rtol=1e-2, atol=1e-2 * _scale(truth))


# ---- permute / unpermute ----------------------------------------------------------------------


def _routing(T, E, k, device, dtype=torch.int64):
    ids = torch.stack([torch.randperm(E)[:k] for _ in range(T)]) if T else torch.zeros(0, k)
    return ids.to(dtype).to(device)


@pytest.mark.parametrize(("T", "E", "k"), [(33, 8, 1), (20, 16, 8), (1, 1, 1), (9, 64, 6)])
@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32], ids=["i64", "i32"])
def test_permute_matches_reference(device, T, E, k, id_dtype):
    hidden = torch.randn(T, 24, device=device)
    ids = _routing(T, E, k, device, id_dtype)
    permuted, row_id_map, counts = ops.moe_permute(hidden, ids, E)
    want_p, want_map, want_counts = ref.moe_permute(hidden.cpu(), ids.cpu(), E)
    assert torch.equal(permuted.cpu(), want_p)
    assert torch.equal(row_id_map.cpu(), want_map)
    assert counts.device.type == "cpu"
    assert counts.dtype == torch.int64
    assert torch.equal(counts, want_counts)


def test_permute_infers_num_experts_and_handles_no_tokens(device):
    ids = torch.tensor([[3, 1], [1, 0]], device=device)
    _, _, counts = ops.moe_permute(torch.randn(2, 4, device=device), ids)
    assert counts.tolist() == [1, 2, 0, 1]
    permuted, row_id_map, counts = ops.moe_permute(
        torch.randn(0, 4, device=device), torch.zeros(0, 2, dtype=torch.int64, device=device), 5
    )
    assert permuted.shape == (0, 4)
    assert row_id_map.shape == (0, 2)
    assert counts.tolist() == [0] * 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "sum"])
def test_unpermute_matches_reference(device, dtype, weighted):
    T, E, k = 29, 12, 4
    ids = _routing(T, E, k, device)
    permuted = torch.randn(T * k, 40, device=device, dtype=dtype)
    _, row_id_map, _ = ops.moe_permute(torch.randn(T, 1, device=device), ids, E)
    w = torch.rand(T, k, device=device) if weighted else None
    out = ops.moe_unpermute(permuted, row_id_map, w)
    truth = ref.moe_unpermute(permuted.double(), row_id_map, None if w is None else w.double())
    assert out.dtype == dtype
    if dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(out.double(), truth, rtol=0, atol=1e-6 * _scale(truth))
    else:  # fp32 sum, one rounding: within half an ulp of the low dtype, plus the sum's error
        torch.testing.assert_close(out.double(), truth, rtol=2**-8, atol=1e-6)


def test_permute_then_unpermute_round_trip(device):
    T, E, k = 50, 7, 3
    hidden = torch.randn(T, 16, device=device)
    ids = _routing(T, E, k, device)
    permuted, row_id_map, _ = ops.moe_permute(hidden, ids, E)
    w = torch.softmax(torch.randn(T, k, device=device), -1)  # weights summing to 1 give hidden
    torch.testing.assert_close(ops.moe_unpermute(permuted, row_id_map, w), hidden)
    torch.testing.assert_close(ops.moe_unpermute(permuted, row_id_map), k * hidden)


def test_permute_unpermute_backward(device):
    T, E, k, d = 23, 6, 2, 10
    hidden = torch.randn(T, d, device=device, requires_grad=True)
    w = torch.rand(T, k, device=device, requires_grad=True)
    ids = _routing(T, E, k, device)
    scale = torch.randn(T * k, d, device=device)  # a per-row transform between the two
    permuted, row_id_map, _ = ops.moe_permute(hidden, ids, E)
    out = ops.moe_unpermute(permuted * scale, row_id_map, w)
    g = torch.randn_like(out)
    dh, dw = torch.autograd.grad(out, (hidden, w), g)
    h64, w64 = hidden.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    p64, m64, _ = ref.moe_permute(h64, ids.cpu(), E)
    o64 = ref.moe_unpermute(p64 * scale.double(), m64.to(device), w64)
    th, tw = torch.autograd.grad(o64, (h64, w64), g.double())
    torch.testing.assert_close(dh.double(), th, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dw.double(), tw, rtol=1e-5, atol=1e-5)


def test_permute_unpermute_gradcheck():
    T, E, k = 6, 4, 2
    ids = _routing(T, E, k, "cpu")
    hidden = torch.randn(T, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(T, k, dtype=torch.float64, requires_grad=True)

    def f(hidden, w):
        permuted, row_id_map, _ = ops.moe_permute(hidden, ids, E)
        return ops.moe_unpermute(permuted.sin(), row_id_map, w)

    assert torch.autograd.gradcheck(f, (hidden, w))


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_permute_isa_variants_agree(isa):
    T, E, k = 300, 16, 4
    hidden = torch.randn(T, 96, dtype=torch.bfloat16)
    ids = _routing(T, E, k, "cpu")
    w = torch.rand(T, k)
    p0, m0, _ = ops.moe_permute(hidden, ids, E)
    y0 = ops.moe_unpermute(p0, m0, w)
    with cpu_isa(isa):
        p1, m1, _ = ops.moe_permute(hidden, ids, E)
        y1 = ops.moe_unpermute(p1, m1, w)
    assert torch.equal(p0, p1)
    assert torch.equal(m0, m1)
    torch.testing.assert_close(y1, y0, rtol=2**-7, atol=0)


# ---- a whole expert pass, compile, opcheck -----------------------------------------------------


def _expert_pass(hidden, ids, w, up, down):
    permuted, row_id_map, counts = ops.moe_permute(hidden, ids, up.shape[0])
    h = torch.relu(ops.grouped_mm(permuted, up, counts, trans_b=True)).square()
    return ops.moe_unpermute(ops.grouped_mm(h, down, counts, trans_b=True), row_id_map, w)


def test_expert_pass_matches_token_by_token_reference(device):
    T, E, k, d, f = 40, 8, 2, 16, 24
    hidden = torch.randn(T, d, device=device)
    ids, w = _routing(T, E, k, device), torch.rand(T, k, device=device)
    up, down = torch.randn(E, f, d, device=device) / 4, torch.randn(E, d, f, device=device) / 5
    out = _expert_pass(hidden, ids, w, up, down)
    truth = ref.moe_experts(hidden.double(), ids, w.double(), up.double(), down.double())
    torch.testing.assert_close(out.double(), truth, rtol=0, atol=1e-5 * _scale(truth))


def test_torch_compile_fullgraph():
    T, E, k, d, f = 16, 4, 2, 8, 12
    hidden, ids, w = torch.randn(T, d), _routing(T, E, k, "cpu"), torch.rand(T, k)
    up, down = torch.randn(E, f, d, requires_grad=True), torch.randn(E, d, f, requires_grad=True)
    compiled = torch.compile(_expert_pass, fullgraph=True, backend="aot_eager")
    out = compiled(hidden, ids, w, up, down)
    torch.testing.assert_close(out, _expert_pass(hidden, ids, w, up, down))
    out.sum().backward()
    assert up.grad is not None
    assert down.grad is not None


def test_opcheck():
    T, E, k = 12, 4, 2
    a, b, sizes = _operands([5, 0, 7], 6, 4, torch.float32, "cpu", True)
    torch.library.opcheck(torch.ops.nemocore.grouped_mm.default, (a, b, sizes, True))
    torch.library.opcheck(
        torch.ops.nemocore.grouped_mm_wgrad.default, (a, torch.randn(12, 3), sizes)
    )
    hidden, ids = torch.randn(T, 5), _routing(T, E, k, "cpu")
    torch.library.opcheck(torch.ops.nemocore.moe_permute.default, (hidden, ids, E))
    _, row_id_map, _ = ops.moe_permute(hidden, ids, E)
    torch.library.opcheck(
        torch.ops.nemocore.moe_unpermute.default,
        (torch.randn(T * k, 5), row_id_map, torch.rand(T, k)),
    )


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda a, b, s: ops.grouped_mm(a, b[:, :3], s), ValueError, "k = a.shape"),
        (lambda a, b, s: ops.grouped_mm(a, b.double(), s), TypeError, "b: expected dtype"),
        (lambda a, b, s: ops.grouped_mm(a, b, s[:2]), ValueError, "batch_sizes: expected shape"),
        (lambda a, b, s: ops.grouped_mm(a, b, s + 1), ValueError, "sums to"),
        (lambda a, b, s: ops.grouped_mm(a, b, s.float()), TypeError, "batch_sizes"),
        (
            lambda a, b, s: ops.grouped_mm(a, b, torch.tensor([-1, 9, 2])),
            ValueError,
            ">= 0",
        ),
        (lambda a, b, s: ops.grouped_mm(a[0], b, s), ValueError, "a: expected 2 dimensions"),
        (lambda a, b, s: ops.grouped_mm(a.int(), b, s), TypeError, "a: expected dtype"),
    ],
)
def test_grouped_mm_bad_input(call, error, match):
    a, b, sizes = _operands([3, 5, 2], 8, 4, torch.float32, "cpu", False)
    with pytest.raises(error, match=match):
        call(a, b, sizes)


def test_permute_unpermute_bad_input():
    hidden, ids = torch.randn(4, 3), torch.tensor([[0, 1], [1, 2], [2, 0], [0, 5]])
    with pytest.raises(ValueError, match="outside"):
        ops.moe_permute(hidden, ids, 3)
    with pytest.raises(ValueError, match="topk_ids: expected 4 rows"):
        ops.moe_permute(hidden, ids[:3], 6)
    with pytest.raises(TypeError, match="topk_ids: expected dtype"):
        ops.moe_permute(hidden, ids.float(), 6)
    permuted, row_id_map, _ = ops.moe_permute(hidden, ids, 6)
    with pytest.raises(ValueError, match="permuted: expected 8 rows"):
        ops.moe_unpermute(permuted[:7], row_id_map)
    broken = row_id_map.clone()
    broken[0, 0] = broken[0, 1]
    with pytest.raises(ValueError, match="exactly once"):
        ops.moe_unpermute(permuted, broken)
    with pytest.raises(ValueError, match="topk_weights: expected shape"):
        ops.moe_unpermute(permuted, row_id_map, torch.rand(4, 3))
