"""Cached inference: prefill + token-by-token decode equals the full forward (every block type,
patterns without attention or without Mamba), the dt clamp is the same on both paths,
padded batches generate what each prompt generates alone, sampling is seeded, the decode step
compiles, and the cache grows with the attention layers only (model.md 3.2.1, 5)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from model_helpers import one_thread, random_ids, tiny_model  # noqa: F401 (autouse fixture)

from nemocore.models import NemotronHConfig, NemotronHForCausalLM, generate


def _decode_vs_full(model, ids, prefill_len):
    with torch.no_grad():
        full = model(ids).logits
        cache = model.make_cache(ids.shape[0], prefill_len, ids.shape[1])
        got = [model(ids[:, :prefill_len], cache=cache).logits[:, -1]]
        for t in range(prefill_len, ids.shape[1]):
            got.append(model.decode_step(ids[:, t], cache))
            cache.advance(1)
    want = full[:, prefill_len - 1 :]
    return (torch.stack(got, 1) - want).abs().max().item() / want.abs().max().item()


@pytest.mark.parametrize("pattern", ["M*-EM*E", "M-EM", "*E-*"])
def test_decode_equals_full_forward(pattern):
    model = tiny_model(hybrid_override_pattern=pattern, moe_latent_size=32)
    assert _decode_vs_full(model, random_ids(3, 29), prefill_len=11) < 1e-5
    assert _decode_vs_full(model, random_ids(1, 6), prefill_len=1) < 1e-5


def _with_small_dt(model):
    with torch.no_grad():  # softplus(-9) ~ 1e-4 < time_step_min: a clamp at 1e-3 fires
        for name, p in model.named_parameters():
            if name.endswith("dt_bias"):
                p.fill_(-9.0)
            if name.endswith("mixer.D"):
                p.zero_()
    return model


def test_dt_limit_applies_to_prefill_and_decode_alike():
    model = _with_small_dt(tiny_model(hybrid_override_pattern="M-M", dt_limit=(1e-3, math.inf)))
    assert _decode_vs_full(model, random_ids(2, 20), prefill_len=8) < 1e-5
    # transformers_compat reproduces transformers 5.24: clamp in prefill, none in decode
    compat = _with_small_dt(tiny_model(hybrid_override_pattern="M-M", transformers_compat=True))
    assert _decode_vs_full(compat, random_ids(2, 20), prefill_len=8) > 1e-2


def test_transformers_compat_matches_transformers_when_the_clamp_fires(tmp_path):
    transformers = pytest.importorskip("transformers")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    ours = _with_small_dt(tiny_model(hybrid_override_pattern="M*M", transformers_compat=True))
    ours.save_pretrained(tmp_path)
    theirs = transformers.NemotronHForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids(2, 24)
    with torch.no_grad():
        want = theirs(ids).logits
        assert (ours(ids).logits - want).abs().max() < 1e-4 * want.abs().max()
        ours_default = NemotronHForCausalLM.from_pretrained(tmp_path, transformers_compat=False)
        assert (ours_default(ids).logits - want).abs().max() > 1e-3 * want.abs().max()


def _prompts():
    lengths = (7, 3, 12)
    return [random_ids(1, n, seed=10 + n)[0] for n in lengths]


def _padded(prompts, side):
    L = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), L, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        sl = slice(L - len(p), L) if side == "left" else slice(0, len(p))
        ids[i, sl], mask[i, sl] = p, 1
    return ids, mask


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_generates_what_each_prompt_generates_alone(side):
    model = tiny_model()
    prompts = _prompts()
    ids, mask = _padded(prompts, side)
    batch = generate(model, ids, 10, temperature=0, attention_mask=mask, eos_token_id=[])
    for i, p in enumerate(prompts):
        alone = generate(model, p[None], 10, temperature=0, eos_token_id=[])
        assert batch[i, -10:].tolist() == alone[0, -10:].tolist()
        assert batch[i, ids.shape[1] - len(p) : ids.shape[1]].tolist() == p.tolist()


def test_sampling_is_seeded_and_eos_ends_rows():
    model = tiny_model()
    ids = random_ids(4, 5)
    a = model.generate(ids, 12, temperature=1.0, top_k=20, top_p=0.9, seed=7, eos_token_id=[])
    b = model.generate(ids, 12, temperature=1.0, top_k=20, top_p=0.9, seed=7, eos_token_id=[])
    c = model.generate(ids, 12, temperature=1.0, seed=8, eos_token_id=[])
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    greedy = model.generate(ids, 6, temperature=0, eos_token_id=[])
    assert torch.equal(model.generate(ids, 6, top_k=1, seed=3, eos_token_id=[]), greedy)
    eos = int(greedy[0, 5 + 2])  # row 0's third new token
    out = model.generate(ids, 6, temperature=0, eos_token_id=eos, pad_token_id=0)
    row = out[0, 5:].tolist()
    assert row[:3] == greedy[0, 5:8].tolist()
    assert row[3:] == [0] * (len(row) - 3)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(ids, 4, top_p=0.0)
    with pytest.raises(ValueError, match="token ids"):
        model.generate(ids + 1000, 4)
    right = torch.ones_like(ids)
    right[0, -2:] = 0
    with pytest.raises(ValueError, match="left-padded"):
        model(ids, attention_mask=right, cache=model.make_cache(4, 5, 1))
    with pytest.raises(ValueError, match="at least one real token"):
        model.generate(ids, 4, attention_mask=torch.zeros_like(ids))


def test_decode_step_compiles():
    model = tiny_model(hybrid_override_pattern="M*E")
    ids = random_ids(2, 10)
    with torch.no_grad():
        full = model(ids).logits
        cache = model.make_cache(2, 6, 4)
        model(ids[:, :6], cache=cache)
        step = torch.compile(model.decode_step, fullgraph=True)
        for t in range(6, 10):
            logits = step(ids[:, t], cache)
            cache.advance(1)
            torch.testing.assert_close(logits, full[:, t], rtol=1e-5, atol=1e-5)


def test_cache_grows_with_attention_layers_only():
    def per_sequence_bytes(pattern, context):
        cfg = NemotronHConfig.tiny(hybrid_override_pattern=pattern)
        with torch.device("meta"):
            model = NemotronHForCausalLM(cfg)
        cache = model.make_cache(1, context, 1, device="cpu", dtype=torch.bfloat16)
        return cache.memory_bytes()["total"]

    base = "M*"
    more_mamba, more_attention = "MMMM*", "M***"
    for pattern in (base, more_mamba, more_attention):
        growth = per_sequence_bytes(pattern, 2048) - per_sequence_bytes(pattern, 1024)
        kv_per_token = 2 * 2 * 16 * 2  # K and V, 2 KV heads x 16 dims, bf16
        assert growth == pattern.count("*") * kv_per_token * 1024
    # extra Mamba layers add a constant (their state), independent of the context
    extra = per_sequence_bytes(more_mamba, 1024) - per_sequence_bytes(base, 1024)
    assert extra == per_sequence_bytes(more_mamba, 4096) - per_sequence_bytes(base, 4096) > 0
