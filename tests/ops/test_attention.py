"""Decode-time attention (decoding.md 2.7): the bifurcated op against attention over the
explicitly replicated cache (``nemocore.ref.bifurcated_attention``) and against the second,
piecewise formulation merged by log-sum-exp; GQA, MQA, MHA; q_len 1 and 5; ragged lengths;
several contexts; gradients; bad input.

Tolerances: float64 to 1e-10; float32 to 2e-6 (softmax-weighted sums of O(1) values);
bf16/fp16 at most 2x the error of plain PyTorch computing the same attention at that precision
(``assert_close_to_truth``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import CPU_ISAS, assert_close_to_truth, cpu_isa, requires_cuda
from nemocore import _native, ops, ref


def _cuda_attention_built() -> bool:
    return bool(_native.kernels().build_info().get("cuda_attention", False))


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                requires_cuda,
                pytest.mark.cuda,
                pytest.mark.skipif(not _cuda_attention_built(), reason="CUDA attention not built"),
            ],
        ),
    ]
)
def device(request) -> torch.device:
    return torch.device(request.param)


HEADS = {"mha": (4, 4), "gqa": (8, 2), "mqa": (6, 1)}


def _inputs(b, heads, T, D, Mc, Md, device, dtype=torch.float32, contexts=0):
    H, Hkv = heads
    q = torch.randn(b, H, T, D, dtype=dtype, device=device)
    shape = (contexts, Hkv, Mc, D) if contexts else (Hkv, Mc, D)
    kc = torch.randn(shape, dtype=dtype, device=device)
    vc = torch.randn(shape, dtype=dtype, device=device)
    kd = torch.randn(b, Hkv, Md, D, dtype=dtype, device=device)
    vd = torch.randn(b, Hkv, Md, D, dtype=dtype, device=device)
    return q, kc, vc, kd, vd


def _truth(q, kc, vc, kd, vd, lens=None, ctx_index=None, ctx_lens=None):
    d = [None if t is None else t.double() for t in (q, kc, vc, kd, vd)]
    return ref.bifurcated_attention(*d, lens, ctx_index, ctx_lens=ctx_lens)


@pytest.mark.parametrize("heads", list(HEADS), ids=list(HEADS))
@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize(("Mc", "Md"), [(1, 7), (300, 13), (37, 0), (513, 40)])
def test_matches_replicated_attention(device, heads, T, Mc, Md):
    b = 4
    q, kc, vc, kd, vd = _inputs(b, HEADS[heads], T, 32, Mc, Md, device)
    lens = torch.tensor([Md, Md // 2, 0, min(Md, 3)], device=device)
    out, lse = ops.bifurcated_attention(q, kc, vc, kd, vd, lens, return_lse=True)
    want, want_lse = _truth(q, kc, vc, kd, vd, lens)
    torch.testing.assert_close(out.double(), want, rtol=0, atol=2e-6)
    torch.testing.assert_close(lse.double(), want_lse, rtol=0, atol=2e-6)


def test_float64_exact_and_piecewise_formulation_agrees(device):
    q, kc, vc, kd, vd = _inputs(3, HEADS["gqa"], 2, 16, 100, 9, device, torch.float64)
    lens = torch.tensor([9, 4, 1], device=device)
    out, lse = ops.bifurcated_attention(q, kc, vc, kd, vd, lens, return_lse=True)
    want, want_lse = _truth(q, kc, vc, kd, vd, lens)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lse, want_lse, rtol=1e-10, atol=1e-10)
    # The merge is order-independent: context in 1, 2 or 7 pieces, then the decoded part.
    for splits in (1, 2, 7):
        o, s = ref.attention_pieces(q, kc, vc, kd, vd, lens, ctx_splits=splits)
        torch.testing.assert_close(o, want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(s, want_lse, rtol=1e-10, atol=1e-10)


def test_several_contexts(device):
    b = 5
    q, kc, vc, kd, vd = _inputs(b, HEADS["gqa"], 3, 16, 60, 8, device, contexts=3)
    ctx_index = torch.tensor([2, 0, 2, 1, 0], device=device)
    ctx_lens = torch.tensor([60, 1, 33], device=device)
    lens = torch.tensor([8, 3, 0, 5, 2], device=device)
    out = ops.bifurcated_attention(q, kc, vc, kd, vd, lens, ctx_index, ctx_lens=ctx_lens)
    want, _ = _truth(q, kc, vc, kd, vd, lens, ctx_index, ctx_lens)
    torch.testing.assert_close(out.double(), want, rtol=0, atol=2e-6)


def test_empty_pieces_give_zeros_not_nan(device):
    q, kc, vc, kd, vd = _inputs(2, HEADS["gqa"], 2, 8, 5, 4, device, contexts=2)
    # Sample 0 reads an empty context and has no decoded keys: no key at all.
    out, lse = ops.bifurcated_attention(
        q, kc, vc, kd, vd, torch.tensor([0, 4], device=device), torch.tensor([0, 1], device=device),
        ctx_lens=torch.tensor([0, 5], device=device), return_lse=True,
    )  # fmt: skip
    assert torch.isfinite(out).all()
    assert (out[0] == 0).all()
    assert torch.isneginf(lse[0]).all()
    assert torch.isfinite(lse[1]).all()


def test_plain_ragged_decode_matches_sdpa(device):
    """gqa_decode_attention (no shared context) against SDPA on each sample's valid keys."""
    b, H, Hkv, T, D, M = 3, 8, 2, 3, 32, 50
    q = torch.randn(b, H, T, D, device=device)
    k, v = torch.randn(b, Hkv, M, D, device=device), torch.randn(b, Hkv, M, D, device=device)
    lens = torch.tensor([50, 17, 3], device=device)
    out = ops.gqa_decode_attention(q, k, v, lens)
    for i, n in enumerate(lens.tolist()):
        kk, vv = k[i : i + 1, :, :n], v[i : i + 1, :, :n]
        # the T queries are the last T of the n positions: a causal mask aligned to the end
        mask = torch.ones(T, n, dtype=torch.bool, device=device).tril(n - T)
        want = F.scaled_dot_product_attention(q[i : i + 1], kk, vv, attn_mask=mask, enable_gqa=True)
        torch.testing.assert_close(out[i : i + 1], want, rtol=1e-5, atol=1e-5)


def test_non_contiguous_inputs(device):
    q, kc, vc, kd, vd = _inputs(3, HEADS["gqa"], 2, 16, 40, 6, device)
    q = q.transpose(1, 2).contiguous().transpose(1, 2)
    kc, vc = kc.transpose(0, 1).contiguous().transpose(0, 1), vc[..., ::1]
    kd = kd.transpose(2, 3).contiguous().transpose(2, 3)
    assert not (q.is_contiguous())
    assert not (kc.is_contiguous())
    assert not (kd.is_contiguous())
    out = ops.bifurcated_attention(q, kc, vc, kd, vd, torch.tensor([6, 2, 1], device=device))
    want, _ = _truth(q, kc, vc, kd, vd, torch.tensor([6, 2, 1]))
    torch.testing.assert_close(out.double(), want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision(device, dtype):
    q, kc, vc, kd, vd = _inputs(4, HEADS["gqa"], 2, 64, 200, 10, device, dtype)
    lens = torch.tensor([10, 5, 2, 0], device=device)
    out = ops.bifurcated_attention(q, kc, vc, kd, vd, lens)
    assert out.dtype == dtype
    want, _ = _truth(q, kc, vc, kd, vd, lens)
    # plain PyTorch at that precision: SDPA over the replicated cache, per sample
    lowp = []
    for i, n in enumerate(lens.tolist()):
        k = torch.cat([kc, kd[i, :, :n]], 1)[None]
        v = torch.cat([vc, vd[i, :, :n]], 1)[None]
        mask = torch.ones(2, k.shape[2], dtype=torch.bool, device=device).tril(k.shape[2] - 2)
        mask[:, : kc.shape[1]] = True
        lowp.append(
            F.scaled_dot_product_attention(q[i : i + 1], k, v, attn_mask=mask, enable_gqa=True)
        )
    assert_close_to_truth(out, want, torch.cat(lowp))


@pytest.mark.parametrize("heads", ["gqa", "mqa"])
def test_gradients_match_replicated_reference(device, heads):
    q, kc, vc, kd, vd = _inputs(3, HEADS[heads], 2, 8, 20, 5, device, torch.float64, contexts=2)
    ctx_index = torch.tensor([1, 0, 1], device=device)
    ctx_lens = torch.tensor([20, 11], device=device)
    lens = torch.tensor([5, 1, 3], device=device)
    inputs = [t.requires_grad_() for t in (q, kc, vc, kd, vd)]
    out, lse = ops.bifurcated_attention(
        *inputs, lens, ctx_index, ctx_lens=ctx_lens, return_lse=True
    )
    go, gl = torch.randn_like(out), torch.randn_like(lse)
    got = torch.autograd.grad((out * go).sum() + (lse * gl).sum(), inputs)
    copies = [t.detach().clone().requires_grad_() for t in inputs]
    w_out, w_lse = ref.bifurcated_attention(*copies, lens, ctx_index, ctx_lens=ctx_lens)
    want = torch.autograd.grad((w_out * go).sum() + (w_lse * gl).sum(), copies)
    for name, a, b in zip(("q", "k_ctx", "v_ctx", "k_dec", "v_dec"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)


def test_gradcheck():
    q, kc, vc, kd, vd = _inputs(2, HEADS["gqa"], 2, 4, 3, 3, "cpu", torch.float64)
    lens = torch.tensor([3, 1])

    def f(q, kc, vc, kd, vd):
        return ops.bifurcated_attention(q, kc, vc, kd, vd, lens)

    inputs = tuple(t.requires_grad_() for t in (q, kc, vc, kd, vd))
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_isa_variants_and_threads_agree(isa):
    q, kc, vc, kd, vd = _inputs(2, HEADS["gqa"], 1, 64, 1000, 30, "cpu")
    lens = torch.tensor([30, 7])
    base = ops.bifurcated_attention(q, kc, vc, kd, vd, lens)
    threads = torch.get_num_threads()
    with cpu_isa(isa):
        variant = ops.bifurcated_attention(q, kc, vc, kd, vd, lens)
        torch.set_num_threads(1)
        try:
            one = ops.bifurcated_attention(q, kc, vc, kd, vd, lens)
        finally:
            torch.set_num_threads(threads)
    torch.testing.assert_close(variant, base, rtol=1e-5, atol=1e-6)
    assert torch.equal(one, variant)  # a thread count never changes a result


def test_prefill_attention_matches_reference():
    b, H, Hkv, L, D = 2, 8, 2, 9, 16
    q, k, v = torch.randn(b, H, L, D), torch.randn(b, Hkv, L, D), torch.randn(b, Hkv, L, D)
    out = ops.prefill_attention(q, k, v)
    # prefill of L tokens == decoding them all at once with an empty context
    want, _ = ref.bifurcated_attention(q, None, None, k, v)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_torch_compile_and_opcheck():
    q, kc, vc, kd, vd = _inputs(2, HEADS["gqa"], 1, 8, 10, 4, "cpu")
    lens = torch.tensor([4, 2])
    compiled = torch.compile(ops.bifurcated_attention, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(
        compiled(q, kc, vc, kd, vd, lens), ops.bifurcated_attention(q, kc, vc, kd, vd, lens)
    )
    torch.library.opcheck(
        torch.ops.nemocore.attention_decode.default,
        (q, kc[None], vc[None], None, None, kd, vd, lens, 0.3),
    )


def test_bad_input():
    q, kc, vc, kd, vd = _inputs(2, HEADS["gqa"], 1, 8, 10, 4, "cpu")
    with pytest.raises(ValueError, match="not a multiple"):
        ops.bifurcated_attention(q[:, :7], kc, vc, kd, vd)
    with pytest.raises(ValueError, match="k_dec: expected"):
        ops.bifurcated_attention(q, kc, vc, kd[:1], vd[:1])
    with pytest.raises(TypeError, match="v_ctx: expected dtype"):
        ops.bifurcated_attention(q, kc, vc.double(), kd, vd)
    with pytest.raises(ValueError, match="dec_lens"):
        ops.bifurcated_attention(q, kc, vc, kd, vd, torch.tensor([5, 1]))
    with pytest.raises(ValueError, match="ctx_index"):
        ops.bifurcated_attention(q, kc[None], vc[None], kd, vd, None, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="both or neither"):
        ops.bifurcated_attention(q, kc, None, kd, vd)
    with pytest.raises(ValueError, match="no keys"):
        ops.bifurcated_attention(q, None, None)
