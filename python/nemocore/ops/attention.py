"""Decode-time attention: bifurcated (shared-prefix) attention, plain GQA decode over a ragged
KV cache, and prefill through PyTorch's SDPA (decoding.md section 2, kernels.md section 5).

Ladder (same names in ``nemocore.ref`` for the references):
    bifurcated_attention / gqa_decode_attention   public functions: check, normalise, call
    nemocore::attention_decode                    torch custom op (fake impl, autograd below)
    nemocore._C.attention_decode                  csrc/cpu/kernels/attention_decode.cpp, and
                                                  csrc/cuda/attention_decode.cu when built
                                                  (build_info()["cuda_attention"])

The backward pass (for training-time use) is written with torch matmuls over the same two
pieces, without replicating the context: per context, every query row that reads it multiplies
its keys in one batched GEMM, using the saved log-sum-exp to rebuild the probabilities
(FlashAttention's backward equations).

No cascade-or-not dispatcher (vLLM's ``use_cascade_attention``, decoding.md 2.6) is needed:
that heuristic exists because a cascade kernel that does not split the shared prefix leaves SMs
idle at small batch. Both of our kernels split the context across work items (split-KV), so
the bifurcated path is also the fast path at batch 1 (BENCHMARKS.md: 2.4x SDPA at b1 on the
CPU), and a batch without a shared prefix simply passes no context.

Letters: b batch, H query heads, Hkv KV heads, T q_len, D head dim, Mc context length,
Md decoded capacity, C contexts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nemocore import _native
from nemocore.ops import _checks


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("nemocore::attention_decode", mutates_args=())
def _attention_decode(
    q: Tensor,
    k_ctx: Tensor | None,
    v_ctx: Tensor | None,
    ctx_index: Tensor | None,
    ctx_lens: Tensor | None,
    k_dec: Tensor | None,
    v_dec: Tensor | None,
    dec_lens: Tensor | None,
    scale: float,
) -> tuple[Tensor, Tensor]:
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[:3], dtype=_acc(q.dtype), device=q.device)
    keys = sum(t.numel() for t in (k_ctx, k_dec) if t is not None)
    threads, stream = _native.launch_args(q.device, 2 * (q.numel() + keys))

    def alloc(n: int) -> Tensor:
        return torch.empty(n, dtype=_acc(q.dtype), device=q.device)

    _native.kernels().attention_decode(
        q, k_ctx, v_ctx, ctx_index, ctx_lens, k_dec, v_dec, dec_lens, out, lse, scale, alloc,
        threads, stream,
    )  # fmt: skip
    return out, lse


@_attention_decode.register_fake
def _(q, k_ctx, v_ctx, ctx_index, ctx_lens, k_dec, v_dec, dec_lens, scale):
    return torch.empty_like(q), q.new_empty(q.shape[:3], dtype=_acc(q.dtype))


def _setup(ctx, inputs, output):
    q, k_ctx, v_ctx, ctx_index, ctx_lens, k_dec, v_dec, dec_lens, scale = inputs
    ctx.save_for_backward(q, k_ctx, v_ctx, ctx_index, ctx_lens, k_dec, v_dec, dec_lens, *output)
    ctx.scale = scale


def _piece_grads(q, k, v, dout, delta, lse, dlse, keep, scale):
    """Gradients of one key piece for rows q: (..., R, D) against k, v: (..., n, D); `keep`
    (..., R, n) marks the keys each row sees (None: all). P is rebuilt from the final lse."""
    s = scale * q @ k.transpose(-1, -2)
    p = torch.exp(s - lse[..., None])
    if keep is not None:
        p = torch.where(keep, p, torch.zeros_like(p))
    dv = p.transpose(-1, -2) @ dout
    ds = p * (dout @ v.transpose(-1, -2) - delta[..., None] + dlse[..., None])
    return scale * ds @ k, scale * ds.transpose(-1, -2) @ q, dv


def _backward(ctx, dout, dlse):
    q, k_ctx, v_ctx, ctx_index, ctx_lens, k_dec, v_dec, dec_lens, out, lse = ctx.saved_tensors
    acc, scale = lse.dtype, ctx.scale
    b, H, T, D = q.shape
    dout = torch.zeros_like(out, dtype=acc) if dout is None else dout.to(acc)
    dlse = torch.zeros_like(lse) if dlse is None else dlse.to(acc)
    # Rows with no key at all have lse = -inf and no gradient; a finite stand-in keeps exp finite.
    lse = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    delta = (dout * out.to(acc)).sum(-1)  # rowsum(dO * O), (b, H, T)
    qa = q.to(acc)
    dq = torch.zeros_like(qa)
    dk_ctx = dv_ctx = dk_dec = dv_dec = None
    Hkv = (k_ctx if k_ctx is not None else k_dec).shape[1]
    G = H // Hkv

    def rows(t: Tensor, idx: Tensor) -> Tensor:  # (n, H, T, ...) -> (Hkv, n*G*T, ...)
        n = idx.shape[0]
        t = t[idx].reshape(n, Hkv, G * T, *t.shape[3:])
        return t.transpose(0, 1).reshape(Hkv, n * G * T, *t.shape[3:])

    if k_ctx is not None:
        dk_ctx, dv_ctx = torch.zeros_like(k_ctx, dtype=acc), torch.zeros_like(v_ctx, dtype=acc)
        for c in range(k_ctx.shape[0]):
            if ctx_index is None:
                idx = torch.arange(b, device=q.device)
            else:
                idx = torch.nonzero(ctx_index == c).flatten()
            n_keys = k_ctx.shape[2] if ctx_lens is None else int(ctx_lens[c])
            if idx.numel() == 0 or n_keys == 0:
                continue
            k, v = k_ctx[c, :, :n_keys].to(acc), v_ctx[c, :, :n_keys].to(acc)
            g = _piece_grads(
                rows(qa, idx), k, v, rows(dout, idx), rows(delta, idx), rows(lse, idx),
                rows(dlse, idx), None, scale,
            )  # fmt: skip
            n = idx.shape[0]
            dq[idx] += g[0].reshape(Hkv, n, G * T, D).transpose(0, 1).reshape(n, H, T, D)
            dk_ctx[c, :, :n_keys] += g[1]
            dv_ctx[c, :, :n_keys] += g[2]
    if k_dec is not None:
        Md = k_dec.shape[2]
        lens = torch.full((b,), Md, device=q.device) if dec_lens is None else dec_lens.to(q.device)
        # Query t sees decoded keys [0, clamp(len - T + 1 + t, 0, len)) (decoding.md 2.5).
        t_pos = torch.arange(T, device=q.device)
        vis = (lens[:, None] - T + 1 + t_pos).clamp(min=0).minimum(lens[:, None])  # (b, T)
        keep = torch.arange(Md, device=q.device) < vis[..., None]  # (b, T, Md)
        keep = keep[:, None, None].expand(b, Hkv, G, T, Md).reshape(b, Hkv, G * T, Md)

        def grouped(t: Tensor) -> Tensor:
            return t.reshape(b, Hkv, G * T, *t.shape[3:])

        g = _piece_grads(
            grouped(qa), k_dec.to(acc), v_dec.to(acc), grouped(dout), grouped(delta),
            grouped(lse), grouped(dlse), keep, scale,
        )  # fmt: skip
        dq += g[0].reshape(b, H, T, D)
        dk_dec, dv_dec = g[1], g[2]

    def cast(g, like):
        return None if g is None else g.to(like.dtype)

    return (
        dq.to(q.dtype),
        cast(dk_ctx, k_ctx),
        cast(dv_ctx, v_ctx),
        None,
        None,
        cast(dk_dec, k_dec),
        cast(dv_dec, v_dec),
        None,
        None,
    )


_attention_decode.register_autograd(_backward, setup_context=_setup)


def _lengths(t: Tensor | None, name: str, rows: int, hi: int, device) -> Tensor | None:
    """An int64 (rows,) tensor on `device` with entries in [0, hi] (checked here for CUDA
    tensors; the C++ side checks CPU ones)."""
    if t is None:
        return None
    _checks.tensor(t, name, shape=(rows,), dtypes=(torch.int32, torch.int64), device=device)
    t = t.to(torch.int64).contiguous()
    if t.is_cuda and rows and not torch.compiler.is_compiling():
        lo, top = int(t.min()), int(t.max())
        if lo < 0 or top > hi:
            raise ValueError(f"{name}: entries must lie in [0, {hi}], got {lo}..{top}")
    return t


def bifurcated_attention(
    q: Tensor,
    k_ctx: Tensor | None,
    v_ctx: Tensor | None,
    k_dec: Tensor | None = None,
    v_dec: Tensor | None = None,
    dec_lens: Tensor | None = None,
    ctx_index: Tensor | None = None,
    scale: float | None = None,
    *,
    ctx_lens: Tensor | None = None,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention of each sample's queries over a shared context, stored once, followed by the
    sample's own decoded tokens; equal to attention over the concatenated, replicated cache.

    Args:
        q: (b, H, T, D) queries; T >= 1 (e.g. several draft tokens to verify at once). The T
            queries are the sample's last T decoded positions: query t sees the context and
            decoded keys ``[0, dec_lens[i] - T + 1 + t)`` (none when that is <= 0).
        k_ctx, v_ctx: (Hkv, Mc, D) shared by every sample, or (C, Hkv, Mc, D) with
            ``ctx_index``; None for no shared context. Read once per KV head for all samples
            and query heads that use them (GQA/MQA: H a multiple of Hkv).
        k_dec, v_dec: (b, Hkv, Md, D) per-sample decoded keys and values, or None.
        dec_lens: (b,) valid decoded lengths in [0, Md] (default: all Md).
        ctx_index: (b,) which context each sample reads (default: context 0).
        scale: softmax scale (default D ** -0.5).
        ctx_lens: (C,) valid lengths of the contexts in [0, Mc] (default: all Mc).
        return_lse: also return the log-sum-exp (b, H, T), float32 (float64 for float64 q),
            to merge with other attention pieces (decoding.md 0.2).

    Returns:
        (b, H, T, D) in q's dtype (and the lse). A query with no key gets zeros and lse -inf.
        Differentiable in q and the keys and values.
    """
    _checks.tensor(q, "q", ndim=4, dtypes=_checks.FLOAT_DTYPES)
    b, H, _, D = q.shape
    if (k_ctx is None) != (v_ctx is None):
        raise ValueError("k_ctx and v_ctx: give both or neither")
    if (k_dec is None) != (v_dec is None):
        raise ValueError("k_dec and v_dec: give both or neither")
    if k_ctx is None and k_dec is None:
        raise ValueError("no keys: give k_ctx/v_ctx, k_dec/v_dec or both")
    if k_ctx is not None:
        for t, name in ((k_ctx, "k_ctx"), (v_ctx, "v_ctx")):
            _checks.tensor(t, name, dtypes=(q.dtype,), device=q.device)
            if t.dim() not in (3, 4) or t.shape[-1] != D:
                raise ValueError(
                    f"{name}: expected (nkv_heads, ctx_len, {D}) or "
                    f"(num_contexts, nkv_heads, ctx_len, {D}), got {_checks.describe(t)}"
                )
        if k_ctx.dim() == 3:
            k_ctx, v_ctx = k_ctx[None], v_ctx[None]
        if v_ctx.shape != k_ctx.shape:
            raise ValueError(
                f"v_ctx: expected the shape of k_ctx {tuple(k_ctx.shape)}, "
                f"got {_checks.describe(v_ctx)}"
            )
        if ctx_index is None and k_ctx.shape[0] != 1:
            raise ValueError(f"ctx_index: required with {k_ctx.shape[0]} contexts")
        ctx_index = _lengths(ctx_index, "ctx_index", b, k_ctx.shape[0] - 1, q.device)
        ctx_lens = _lengths(ctx_lens, "ctx_lens", k_ctx.shape[0], k_ctx.shape[2], q.device)
    elif ctx_index is not None or ctx_lens is not None:
        raise ValueError("ctx_index/ctx_lens: given without k_ctx")
    Hkv = (k_ctx if k_ctx is not None else k_dec).shape[1]
    if k_dec is not None:
        for t, name in ((k_dec, "k_dec"), (v_dec, "v_dec")):
            _checks.tensor(t, name, ndim=4, dtypes=(q.dtype,), device=q.device)
            if t.shape[0] != b or t.shape[1] != Hkv or t.shape[3] != D:
                raise ValueError(
                    f"{name}: expected ({b}, {Hkv}, max_dec_len, {D}), got {_checks.describe(t)}"
                )
        if v_dec.shape != k_dec.shape:
            raise ValueError(f"v_dec: expected the shape of k_dec, got {_checks.describe(v_dec)}")
        dec_lens = _lengths(dec_lens, "dec_lens", b, k_dec.shape[2], q.device)
    elif dec_lens is not None:
        raise ValueError("dec_lens: given without k_dec")
    if H % Hkv:
        raise ValueError(f"q: {H} query heads is not a multiple of {Hkv} KV heads")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    out, lse = _attention_decode(
        q, k_ctx, v_ctx, ctx_index, ctx_lens, k_dec, v_dec, dec_lens, scale
    )
    return (out, lse) if return_lse else out


def gqa_decode_attention(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    cache_lens: Tensor | None = None,
    scale: float | None = None,
    *,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Decode attention over a ragged per-sample KV cache (batches that share no prefix).

    q: (b, H, T, D), the last T positions of each sample; k_cache, v_cache: (b, Hkv, M, D);
    cache_lens: (b,) valid lengths (the T new tokens included). Query t of sample i sees keys
    ``[0, cache_lens[i] - T + 1 + t)``. Returns (b, H, T, D) (and the lse).
    """
    return bifurcated_attention(
        q, None, None, k_cache, v_cache, cache_lens, scale=scale, return_lse=return_lse
    )


def prefill_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
    """Causal prefill attention with GQA through ``F.scaled_dot_product_attention`` (already
    the best kernel for prefill on every device: flash/memory-efficient on GPUs, a fused
    kernel on CPUs). q: (b, H, L, D); k, v: (b, Hkv, L, D). Returns (b, H, L, D)."""
    _checks.tensor(q, "q", ndim=4, dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor(k, "k", ndim=4, dtypes=(q.dtype,), device=q.device)
    _checks.tensor(v, "v", shape=tuple(k.shape), dtypes=(q.dtype,), device=q.device)
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"q: {q.shape[1]} query heads is not a multiple of {k.shape[1]}")
    return F.scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=scale, enable_gqa=q.shape[1] != k.shape[1]
    )
