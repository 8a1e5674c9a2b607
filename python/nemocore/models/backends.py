"""The op tables the mixers call through: ``FAST_OPS`` (``nemocore.ops``, the default) and
``REFERENCE_OPS`` (``nemocore.ref``, the pure-PyTorch ground truth, same signatures). A table
is a plain namespace (not a module) so models stay deep-copyable and picklable."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import Tensor

from nemocore import ops, ref


def reference_prefill_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None):
    """Causal GQA attention, textbook: q (b, H, L, D), k and v (b, Hkv, L, D)."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = scale * q.float() @ k.float().transpose(-1, -2)
    L = q.shape[2]
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    return (probs @ v.float()).to(q.dtype)


REFERENCE_OPS = SimpleNamespace(
    causal_conv1d_fn=ref.causal_conv1d_fn,
    causal_conv1d_update=ref.causal_conv1d_update,
    mamba_chunk_scan_combined=ref.mamba_chunk_scan_combined,
    selective_state_update=ref.selective_state_update,
    prefill_attention=reference_prefill_attention,
)


FAST_OPS = SimpleNamespace(
    causal_conv1d_fn=ops.causal_conv1d_fn,
    causal_conv1d_update=ops.causal_conv1d_update,
    mamba_chunk_scan_combined=ops.mamba_chunk_scan_combined,
    selective_state_update=ops.selective_state_update,
    prefill_attention=ops.prefill_attention,
)
