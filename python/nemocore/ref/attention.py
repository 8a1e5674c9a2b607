"""Pure-PyTorch references of decode-time attention (decoding.md sections 0.2 and 2).

``bifurcated_attention`` here is the textbook form the op must equal: for every sample, the
shared context's keys and values are copied in front of the sample's own decoded ones, the KV
heads are repeated for their query heads, and one softmax runs over the concatenation.
``attention_pieces`` and ``merge_states`` give the second formulation (each piece separately,
merged by log-sum-exp) that tests check against the first.

Letters: b batch, H query heads, Hkv KV heads, T q_len, D head dim, Mc context length,
Md decoded capacity, C contexts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def visible_decoded(dec_len: int, q_len: int, t: int) -> int:
    """Decoded keys query position t sees: the q_len queries are the last q_len decoded
    positions, so query t sees up to and including its own (decoding.md 2.5)."""
    return max(0, min(dec_len, dec_len - q_len + 1 + t))


def _contexts(k_ctx, v_ctx, ctx_index, ctx_lens, batch):
    """Per sample: its context's (keys, values) as (Hkv, len, D) tensors, or None."""
    if k_ctx is None:
        return [None] * batch
    if k_ctx.dim() == 3:
        k_ctx, v_ctx = k_ctx[None], v_ctx[None]
    out = []
    for i in range(batch):
        c = 0 if ctx_index is None else int(ctx_index[i])
        n = k_ctx.shape[2] if ctx_lens is None else int(ctx_lens[c])
        out.append((k_ctx[c, :, :n], v_ctx[c, :, :n]))
    return out


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
) -> tuple[Tensor, Tensor]:
    """Attention over ``[context ; decoded]`` keys, replicated per sample, one softmax.

    q: (b, H, T, D); k_ctx, v_ctx: (Hkv, Mc, D) or (C, Hkv, Mc, D) with ``ctx_index`` (b,);
    k_dec, v_dec: (b, Hkv, Md, D) with ``dec_lens`` (b,). Returns ``out`` (b, H, T, D) in q's
    dtype and ``lse`` (b, H, T) in float32 (float64 for float64 q); no key at all gives out 0
    and lse -inf.
    """
    b, H, T, D = q.shape
    acc = _acc(q.dtype)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    out = torch.zeros(b, H, T, D, dtype=acc, device=q.device)
    lse = torch.full((b, H, T), float("-inf"), dtype=acc, device=q.device)
    contexts = _contexts(k_ctx, v_ctx, ctx_index, ctx_lens, b)
    for i in range(b):
        for t in range(T):
            keys, values = [], []
            if contexts[i] is not None:
                keys.append(contexts[i][0])
                values.append(contexts[i][1])
            if k_dec is not None:
                n_dec = k_dec.shape[2] if dec_lens is None else int(dec_lens[i])
                n = visible_decoded(n_dec, T, t)
                keys.append(k_dec[i, :, :n])
                values.append(v_dec[i, :, :n])
            k = torch.cat(keys, dim=1).to(acc)  # (Hkv, n, D)
            v = torch.cat(values, dim=1).to(acc)
            if k.shape[1] == 0:
                continue
            group = H // k.shape[0]
            k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
            scores = scale * torch.einsum("hd,hnd->hn", q[i, :, t].to(acc), k)
            lse[i, :, t] = torch.logsumexp(scores, -1)
            out[i, :, t] = torch.einsum("hn,hnd->hd", torch.softmax(scores, -1), v)
    return out.to(q.dtype), lse


def merge_states(o_a: Tensor, s_a: Tensor, o_b: Tensor, s_b: Tensor) -> tuple[Tensor, Tensor]:
    """Merges two attention states over disjoint key sets (decoding.md 0.2): ``o`` (..., D) and
    ``s`` = log-sum-exp (...). Empty pieces (``s = -inf``) are skipped, never NaN."""
    m = torch.maximum(s_a, s_b)
    safe = torch.where(torch.isinf(m) & (m < 0), torch.zeros_like(m), m)
    w_a, w_b = torch.exp(s_a - safe), torch.exp(s_b - safe)
    total = w_a + w_b
    o = (w_a[..., None] * o_a + w_b[..., None] * o_b) / total.clamp_min(1e-300)[..., None]
    return o, safe + torch.log(total)


def attention_pieces(
    q: Tensor,
    k_ctx: Tensor,
    v_ctx: Tensor,
    k_dec: Tensor,
    v_dec: Tensor,
    dec_lens: Tensor | None = None,
    scale: float | None = None,
    ctx_splits: int = 1,
) -> tuple[Tensor, Tensor]:
    """The second formulation: the shared context (in ``ctx_splits`` pieces) and the decoded
    part attended separately, then merged with ``merge_states`` in that order."""
    Mc = k_ctx.shape[-2]
    bounds = [round(Mc * s / ctx_splits) for s in range(ctx_splits + 1)]
    o, s = None, None
    for lo, hi in zip(bounds, bounds[1:]):
        part = bifurcated_attention(q, k_ctx[..., lo:hi, :], v_ctx[..., lo:hi, :], scale=scale)
        o, s = part if o is None else merge_states(o, s, part[0].to(o.dtype), part[1])
    dec = bifurcated_attention(q, None, None, k_dec, v_dec, dec_lens, scale=scale)
    return merge_states(o.to(s.dtype), s, dec[0].to(s.dtype), dec[1])
