"""Applying a grammar's token bitmask to logits: a drop-in for xgrammar's
``apply_token_bitmask_inplace`` (decoding.md 4.8).

Ladder (same name in ``nemocore.ref.token_bitmask``):
    apply_token_bitmask_inplace          public function: check, reshape, call the op
    nemocore::apply_token_bitmask        torch custom op, mutates logits (fake impl for compile)
    nemocore._C.apply_token_bitmask      the C++ (CPU, vectorised) and CUDA kernels

Layout (xgrammar's): ``bitmask`` is int32 ``(batch, ceil(vocab / 32))``, bit ``j`` of word ``w``
set iff token ``32 * w + j`` is allowed (``nemocore.grammar.allocate_token_bitmask`` makes one and
``GrammarMatcher.fill_next_token_bitmask`` fills it). Disallowed logits become ``-inf``; logits
wider than the mask (a model vocabulary padded past the tokenizer) are disallowed past it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nemocore import _native
from nemocore.ops import _checks


@torch.library.custom_op("nemocore::apply_token_bitmask", mutates_args=("logits",))
def _apply_token_bitmask(logits: Tensor, bitmask: Tensor, indices: Tensor | None) -> None:
    threads, stream = _native.launch_args(logits.device)
    _native.kernels().apply_token_bitmask(logits, bitmask, indices, threads, stream)


@_apply_token_bitmask.register_fake
def _(logits, bitmask, indices):
    return None


def apply_token_bitmask_inplace(
    logits: Tensor, bitmask: Tensor, indices: Tensor | list[int] | None = None
) -> None:
    """Sets ``logits[r, t] = -inf`` for every token ``t`` that ``bitmask[r]`` does not allow.

    logits: ``(batch, vocab)`` or ``(vocab,)``, float32/bfloat16/float16/float64, any strides.
    bitmask: ``(batch, words)`` or ``(words,)`` int32, same device; tokens at or past
    ``32 * words`` are disallowed. indices: the rows to mask (default all); row ``r`` of logits
    uses row ``r`` of the mask, as in xgrammar.
    """
    _checks.tensor(logits, "logits", dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor(bitmask, "bitmask", dtypes=(torch.int32,), device=logits.device)
    if logits.dim() not in (1, 2) or bitmask.dim() != logits.dim():
        raise ValueError(
            "logits and bitmask: expected (batch, vocab) with (batch, words), or (vocab,) with "
            f"(words,); got {_checks.describe(logits)} and {_checks.describe(bitmask)}"
        )
    logits2 = logits.unsqueeze(0) if logits.dim() == 1 else logits
    mask2 = bitmask.unsqueeze(0) if bitmask.dim() == 1 else bitmask
    if mask2.shape[0] != logits2.shape[0]:
        raise ValueError(
            f"bitmask: expected {logits2.shape[0]} rows like logits, "
            f"got {_checks.describe(bitmask)}"
        )
    if mask2.shape[1] > 1 and mask2.stride(1) != 1:
        mask2 = mask2.contiguous()
    rows = None
    if indices is not None:
        rows = torch.as_tensor(indices, dtype=torch.long, device=logits.device).reshape(-1)
        if rows.numel() and (rows.min() < 0 or rows.max() >= logits2.shape[0]):
            raise ValueError(
                f"indices: every row index must be in [0, {logits2.shape[0]}), got {rows.tolist()}"
            )
        rows = rows.contiguous()
    _apply_token_bitmask(logits2, mask2, rows)
