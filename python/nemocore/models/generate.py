"""Cached generation for Nemotron-H: one prefill, then one-token decode steps through a
``HybridCache`` (gpt-fast's split: prefill, a compilable decode step, a sampling loop).

Padding: prompts may be left- or right-padded (``attention_mask``); they are left-aligned first
(real tokens last). Padded positions then add nothing to the Mamba states (their inputs are
masked, model.md 3.2) and the attention layers store only real tokens (NoPE makes compaction
exact), so each row decodes exactly as it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def left_align(input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Moves each row's padding to the front, keeping the order of its real tokens.
    input_ids, attention_mask: (b, L) -> the same, left-padded."""
    order = torch.sort(attention_mask.to(torch.int8), dim=1, stable=True).indices
    return input_ids.gather(1, order), attention_mask.gather(1, order)


def sample(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Next tokens from logits (b, V): greedy when ``temperature == 0``; otherwise softmax at
    ``temperature`` restricted to the ``top_k`` best (0: all) and to the smallest set whose
    probability reaches ``top_p``. Returns (b,) int64."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        logits = logits.scatter(1, idx, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _check(model, input_ids, max_new_tokens, temperature, top_k, top_p) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: expected >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature: expected >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k: expected >= 0 (0 = off), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p: expected 0 < top_p <= 1, got {top_p}")
    if int(input_ids.max()) >= model.config.vocab_size or int(input_ids.min()) < 0:
        raise ValueError(f"input_ids: token ids must lie in [0, {model.config.vocab_size})")


@torch.no_grad()
def generate(
    model,
    input_ids: Tensor,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_id: int | Sequence[int] | None = None,
    seed: int | None = None,
    attention_mask: Tensor | None = None,
    pad_token_id: int | None = None,
    compile: bool = False,
) -> Tensor:
    """Samples up to ``max_new_tokens`` tokens after each prompt.

    Args:
        model: a ``NemotronHForCausalLM``.
        input_ids: (b, L) prompts, padded on either side as ``attention_mask`` says.
        temperature, top_p, top_k: sampling (``temperature=0``: greedy).
        eos_token_id: id(s) that end a row (default: the config's); later positions of that
            row get ``pad_token_id``. Generation stops once every row has ended.
        seed: seeds the sampling generator (same seed, same tokens).
        attention_mask: (b, L), 1 for real tokens; None means no padding.
        pad_token_id: filler after a row ends (default: the config's, else 0).
        compile: run the decode step under ``torch.compile``.

    Returns:
        (b, L + n) int64, n <= max_new_tokens: the left-aligned prompts, then the new tokens.
    """
    _check(model, input_ids, max_new_tokens, temperature, top_k, top_p)
    cfg = model.config
    eos = cfg.eos_token_id if eos_token_id is None else eos_token_id
    eos = torch.tensor([] if eos is None else [eos] if isinstance(eos, int) else list(eos))
    pad = pad_token_id if pad_token_id is not None else (cfg.pad_token_id or 0)
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape or not bool(attention_mask.any(-1).all()):
            raise ValueError(
                "attention_mask: expected the shape of input_ids with at least one real token "
                f"(1) per row, got shape {tuple(attention_mask.shape)}"
            )
        input_ids, attention_mask = left_align(input_ids, attention_mask)
    b, L = input_ids.shape
    if max_new_tokens == 0:
        return input_ids
    gen = torch.Generator(device=input_ids.device)
    gen.manual_seed(seed if seed is not None else int(torch.randint(2**31, ()).item()))
    cache = model.make_cache(b, L, max_new_tokens)
    logits = model(input_ids, attention_mask=attention_mask, cache=cache).logits[:, -1].float()
    step = torch.compile(model.decode_step, fullgraph=True) if compile else model.decode_step
    finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
    eos = eos.to(input_ids.device)
    new = []
    for i in range(max_new_tokens):
        token = sample(logits, temperature, top_k, top_p, gen)
        token = torch.where(finished, torch.full_like(token, pad), token)
        new.append(token)
        finished |= torch.isin(token, eos)
        if i == max_new_tokens - 1 or bool(finished.all()):
            break
        logits = step(token, cache)
        cache.advance(1)
    return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)
