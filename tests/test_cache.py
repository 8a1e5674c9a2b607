"""HybridCache (decoding.md 2.7, 1.7): fork-then-decode equals decoding each sample with its own
copy of the prompt; rollback equals never having taken the steps, for attention (truncation)
and Mamba layers (snapshots), with real SSD/conv kernels; reorder; memory accounting; errors.
"""

from __future__ import annotations

import pytest
import torch

from nemocore import ops, ref
from nemocore.cache import AttentionCacheSpec, CacheError, HybridCache, MambaCacheSpec

ATT = AttentionCacheSpec(nkv_heads=2, headdim=8)
MAMBA = MambaCacheSpec(conv_dim=22, conv_kernel=4, nheads=3, headdim=4, dstate=5)
H = 4  # query heads


def _cache(**kw) -> HybridCache:
    args = dict(max_batch=6, max_prefix_len=32, max_decode_len=16, dtype=torch.float64)
    return HybridCache([ATT, None, MAMBA, ATT], **{**args, **kw})


def test_fork_then_decode_equals_separate_copies_of_the_prompt():
    cache = _cache(max_prompts=2)
    L = (11, 11)
    prefix = {layer: torch.randn(2, 2, 2, L[0], 8, dtype=torch.float64) for layer in (0, 3)}
    cache.start_prompts(2)
    for layer, (k, v) in prefix.items():
        cache.write_prefix(layer, k, v)
    cache.fork(3)  # prompt 0 -> samples 0..2, prompt 1 -> samples 3..5
    assert cache.ctx_index[:6].tolist() == [0, 0, 0, 1, 1, 1]
    own = {layer: ([], []) for layer in (0, 3)}  # per layer: each step's new K and V
    for step in range(4):
        T = 1 if step != 2 else 3  # a verify step with 3 tokens
        for layer in (0, 3):
            q = torch.randn(6, H, T, 8, dtype=torch.float64)
            k_new = torch.randn(6, 2, T, 8, dtype=torch.float64)
            v_new = torch.randn(6, 2, T, 8, dtype=torch.float64)
            out = cache.attend(layer, q, k_new, v_new)
            own[layer][0].append(k_new)
            own[layer][1].append(v_new)
            # the reference: every sample with its own copy of its prompt, one cache each
            k_p, v_p = prefix[layer]
            for i in range(6):
                k_full = torch.cat([k_p[i // 3], *(k[i] for k in own[layer][0])], 1)
                v_full = torch.cat([v_p[i // 3], *(v[i] for v in own[layer][1])], 1)
                want, _ = ref.bifurcated_attention(
                    q[i : i + 1], None, None, k_full[None], v_full[None]
                )
                torch.testing.assert_close(out[i : i + 1], want, rtol=1e-10, atol=1e-10)
        if step == 2:
            for _ in range(T):
                cache.record_mamba_states()
        cache.advance(T)
    assert cache.dec_lens[:6].tolist() == [6] * 6


def _mamba_step(cache, layer, x, params):
    """One token through a Mamba-2 mixer's stateful parts: conv update, then the SSM step.
    x: (b, conv_dim); returns (b, H, P)."""
    conv, ssm = cache.mamba_states(layer)
    w, A, dt_bias = params
    xbc = ops.causal_conv1d_update(x, conv, w, activation="silu")
    h, p, n = MAMBA.nheads, MAMBA.headdim, MAMBA.dstate
    xs, B = xbc[:, : h * p].reshape(-1, h, p), xbc[:, h * p : h * p + n].reshape(-1, 1, n)
    C = xbc[:, h * p + n :].reshape(-1, 1, n)
    dt = xs.mean(-1, keepdim=True).expand(-1, h, p).contiguous()
    return ops.selective_state_update(
        ssm, xs, dt, A[:, None, None].expand(h, p, n), B, C,
        dt_bias=dt_bias[:, None].expand(h, p), dt_softplus=True,
    )  # fmt: skip


def _params():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(MAMBA.conv_dim, MAMBA.conv_kernel, generator=g, dtype=torch.float64) / 2
    A = -torch.rand(MAMBA.nheads, generator=g, dtype=torch.float64) - 0.5
    dt_bias = torch.randn(MAMBA.nheads, generator=g, dtype=torch.float64) * 0.1
    return w, A, dt_bias


def test_rollback_equals_never_having_taken_the_steps():
    """Samples decode drafts, some are rejected and rolled back, decoding continues; the
    outputs and states equal a fresh cache fed only the accepted tokens."""
    params = _params()
    prompt = torch.randn(5, MAMBA.conv_dim, dtype=torch.float64)
    tokens = torch.randn(3, 8, MAMBA.conv_dim, dtype=torch.float64)  # (sample, step, dim)
    alt = torch.randn(3, 8, MAMBA.conv_dim, dtype=torch.float64)

    def prefilled(max_rollback):
        cache = HybridCache(
            [MAMBA], max_batch=3, max_prefix_len=8, max_decode_len=16,
            max_rollback=max_rollback, dtype=torch.float64,
        )  # fmt: skip
        cache.start_prompts(1)
        for t in range(prompt.shape[0]):  # the prompt, token by token, into sample 0
            _mamba_step(cache, 0, prompt[t : t + 1], params)
        cache.fork(3)
        return cache

    cache = prefilled(max_rollback=4)
    for s in range(4):
        _mamba_step(cache, 0, tokens[:, s], params)
        cache.advance(1)
    # sample 0 keeps all 4, sample 1 drops 2, sample 2 drops all 4 (back to the prompt)
    cache.rollback(torch.tensor([0, 2, 4]))
    assert cache.dec_lens[:3].tolist() == [4, 2, 0]
    kept = [4, 2, 0]
    outs = []
    for s in range(3):
        outs.append(_mamba_step(cache, 0, alt[:, s], params))
        cache.advance(1)
    conv, ssm = cache.mamba_states(0)

    for i in range(3):  # the fresh run of sample i: prompt, its kept tokens, the new ones
        fresh = prefilled(max_rollback=0)
        fresh.reorder([i])
        for s in range(kept[i]):
            _mamba_step(fresh, 0, tokens[i : i + 1, s], params)
            fresh.advance(1)
        for s in range(3):
            want = _mamba_step(fresh, 0, alt[i : i + 1, s], params)
            fresh.advance(1)
            torch.testing.assert_close(outs[s][i : i + 1], want, rtol=1e-12, atol=1e-12)
        f_conv, f_ssm = fresh.mamba_states(0)
        torch.testing.assert_close(conv[i : i + 1], f_conv, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ssm[i : i + 1], f_ssm, rtol=1e-12, atol=1e-12)


def test_attention_rollback_truncates():
    cache = _cache(max_rollback=2)
    cache.start_prompts(1)
    cache.write_prefix(0, *torch.randn(2, 1, 2, 5, 8, dtype=torch.float64))
    cache.write_prefix(3, *torch.randn(2, 1, 2, 5, 8, dtype=torch.float64))
    cache.fork(2)
    q = torch.randn(2, H, 1, 8, dtype=torch.float64)
    kv = [torch.randn(2, 2, 2, 1, 8, dtype=torch.float64) for _ in range(3)]
    outs = []
    for step in range(3):
        for layer in (0, 3):
            out = cache.attend(layer, q, *kv[step])
            if layer == 0:
                outs.append(out)
        cache.advance(1)
    cache.rollback(2)
    assert cache.dec_lens[:2].tolist() == [1, 1]
    again = cache.attend(0, q, *kv[1])  # the same second token again: the same output
    torch.testing.assert_close(again, outs[1])


def test_reorder_follows_the_samples():
    cache = _cache()
    cache.start_prompts(1)
    cache.write_prefix(0, *torch.randn(2, 1, 2, 3, 8, dtype=torch.float64))
    cache.write_prefix(3, *torch.randn(2, 1, 2, 3, 8, dtype=torch.float64))
    cache.fork(3)
    q = torch.randn(3, H, 1, 8, dtype=torch.float64)
    for layer in (0, 3):
        cache.attend(layer, q, *torch.randn(2, 3, 2, 1, 8, dtype=torch.float64))
    cache.advance(1)
    _, _, k_dec, _ = cache.kv[0]
    before = k_dec[:3, :, :1].clone()
    cache.reorder([2, 2, 0, 1])
    assert cache.batch == 4
    torch.testing.assert_close(k_dec[:4, :, :1], before[[2, 2, 0, 1]])


def test_memory_accounting_counts_the_prefix_once():
    cache = HybridCache(
        [ATT, MAMBA], max_batch=8, max_prefix_len=100, max_decode_len=10, max_rollback=3,
        dtype=torch.bfloat16,
    )  # fmt: skip
    cache.start_prompts(1)
    cache.write_prefix(0, *torch.randn(2, 1, 2, 100, 8, dtype=torch.bfloat16))
    cache.fork(8)
    cache.attend(
        0,
        torch.randn(8, H, 1, 8, dtype=torch.bfloat16),
        *torch.randn(2, 8, 2, 1, 8, dtype=torch.bfloat16),
    )
    cache.advance(1)
    mem = cache.memory_bytes()
    per_token = 2 * 2 * 8 * 2  # K and V, 2 heads, 8 dims, bf16
    assert mem["prefix_kv"] == per_token * 100
    assert mem["decoded_kv"] == per_token * 8 * 10
    assert mem["used_kv"] == per_token * (100 + 8)
    assert mem["replicated_kv"] == per_token * 8 * 101
    state = 8 * (22 * 4 * 2 + 3 * 4 * 5 * 4)  # conv bf16 + ssm fp32
    assert mem["mamba"] == state
    assert mem["mamba_snapshots"] == 4 * state
    assert mem["total"] == sum(
        mem[k] for k in ("prefix_kv", "decoded_kv", "mamba", "mamba_snapshots")
    )


def test_errors_name_the_problem():
    cache = _cache(max_rollback=1)
    with pytest.raises(CacheError, match="num_prompts"):
        cache.start_prompts(0)
    cache.start_prompts(1)
    with pytest.raises(CacheError, match="max_prefix_len"):
        cache.write_prefix(0, *torch.randn(2, 1, 2, 40, 8, dtype=torch.float64))
    with pytest.raises(CacheError, match="not an attention layer"):
        cache.write_prefix(1, *torch.randn(2, 1, 2, 4, 8, dtype=torch.float64))
    with pytest.raises(CacheError, match="max_batch"):
        cache.fork(7)
    cache.fork(2)
    with pytest.raises(CacheError, match="expected"):
        cache.append(0, torch.randn(3, 2, 1, 8), torch.randn(3, 2, 1, 8))
    with pytest.raises(CacheError, match="max_decode_len"):
        cache.append(0, *torch.randn(2, 2, 2, 17, 8, dtype=torch.float64))
    with pytest.raises(CacheError, match="decoded length"):
        cache.rollback(1)
    for _ in range(2):
        cache.advance(1)
    with pytest.raises(CacheError, match="max_rollback"):
        cache.rollback(2)
    with pytest.raises(CacheError, match="record_mamba_states"):
        cache.advance(2)
    no_snapshots = _cache()
    no_snapshots.start_prompts(1)
    no_snapshots.fork(1)
    no_snapshots.advance(1)
    with pytest.raises(CacheError, match="max_rollback > 0"):
        no_snapshots.rollback(1)


def test_left_padded_prefixes_are_stored_compacted():
    """write_prefix(lengths=...): each prompt keeps only its last lengths[p] positions (its
    real tokens under left padding), so decoding attends exactly as over the unpadded prompt."""
    cache = _cache(max_prompts=2)
    L, lengths = 9, torch.tensor([9, 4])
    k, v = torch.randn(2, 2, 2, L, 8, dtype=torch.float64)
    cache.start_prompts(2)
    cache.write_prefix(0, k, v, lengths=lengths)
    assert cache.ctx_lens[:2].tolist() == [9, 4]
    cache.fork(1)
    q = torch.randn(2, H, 1, 8, dtype=torch.float64)
    k_new, v_new = torch.randn(2, 2, 2, 1, 8, dtype=torch.float64)
    out = cache.attend(0, q, k_new, v_new)
    for i, n in enumerate(lengths.tolist()):
        k_full = torch.cat([k[i, :, L - n :], k_new[i]], 1)
        v_full = torch.cat([v[i, :, L - n :], v_new[i]], 1)
        want, _ = ref.bifurcated_attention(q[i : i + 1], None, None, k_full[None], v_full[None])
        torch.testing.assert_close(out[i : i + 1], want, rtol=1e-10, atol=1e-10)
