"""Reference for applying a grammar's token bitmask to logits (decoding.md 4.8).

Layout (xgrammar's): ``bitmask`` is int32 ``(batch, ceil(vocab / 32))``; bit ``j`` of word ``w``
of a row is set iff token ``32 * w + j`` is allowed. Disallowed tokens get ``-inf``; tokens past
``32 * bitmask.shape[-1]`` (logits wider than the mask) are disallowed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def unpack_bitmask(bitmask: Tensor, vocab: int) -> Tensor:
    """``(batch, words)`` int32 -> ``(batch, vocab)`` bool, True where the token is allowed."""
    shifts = torch.arange(32, device=bitmask.device, dtype=torch.int32)
    bits = (bitmask.to(torch.int32).unsqueeze(-1) >> shifts) & 1  # (batch, words, 32)
    allowed = bits.flatten(-2).bool()  # (batch, 32 * words), token order
    if allowed.shape[-1] >= vocab:
        return allowed[..., :vocab]
    pad = allowed.new_zeros(*allowed.shape[:-1], vocab - allowed.shape[-1])
    return torch.cat([allowed, pad], dim=-1)


def apply_token_bitmask_inplace(
    logits: Tensor, bitmask: Tensor, indices: Tensor | list[int] | None = None
) -> None:
    """Sets ``logits[r, t] = -inf`` where token ``t`` is not allowed by ``bitmask[r]``.

    logits: ``(batch, vocab)`` or ``(vocab,)``; bitmask: ``(batch, words)`` or ``(words,)`` int32;
    indices: the rows to mask (row ``r`` of logits with row ``r`` of the mask), default all.
    """
    logits2 = logits.view(1, -1) if logits.dim() == 1 else logits
    mask2 = bitmask.view(1, -1) if bitmask.dim() == 1 else bitmask
    rows = torch.arange(logits2.shape[0]) if indices is None else torch.as_tensor(indices)
    rows = rows.to(device=logits2.device, dtype=torch.long)
    allowed = unpack_bitmask(mask2[rows], logits2.shape[-1])
    logits2[rows] = logits2[rows].masked_fill(~allowed, float("-inf"))
