"""Reference depthwise causal conv1d (kernels.md section 1), in plain PyTorch.

Computes in float32 (float64 for float64 inputs) and returns the input dtype, like the kernels.
Letters: b batch, C channels, L seqlen, K width, s new tokens, S conv-state length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _activate(pre: Tensor, activation: str | None) -> Tensor:
    return F.silu(pre) if activation in ("silu", "swish") else pre


def causal_conv1d_fn(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    seq_idx: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
    final_states_out: Tensor | None = None,
    activation: str | None = None,
):
    """Same contract as ``nemocore.ops.causal_conv1d_fn``."""
    ct = _compute_dtype(x)
    batch, dim, seqlen = x.shape
    width = weight.shape[1]
    w = weight.to(ct)
    b = bias.to(ct) if bias is not None else None
    history = (
        initial_states.to(ct)
        if initial_states is not None
        else x.new_zeros(batch, dim, width - 1, dtype=ct)
    )
    # [state ; x]: every output t reads positions t .. t + K - 1 of this padded sequence.
    padded = torch.cat([history, x.to(ct)], dim=-1)  # (b, C, K-1+L)
    if seqlen == 0:
        pre = padded.new_zeros(batch, dim, 0)
    elif seq_idx is None:
        pre = F.conv1d(padded, w.unsqueeze(1), b, groups=dim)  # (b, C, L)
    else:
        # Tap k of output t reads position t-(K-1)+k; it counts only inside t's own sequence.
        windows = padded.unfold(-1, width, 1)  # (b, C, L, K)
        ids = F.pad(seq_idx.long(), (width - 1, 0), value=-1).unfold(-1, width, 1)  # (b, L, K)
        same = (ids == seq_idx.long().unsqueeze(-1)).to(ct)  # (b, L, K)
        pre = torch.einsum("bclk,ck,blk->bcl", windows, w, same)
        if b is not None:
            pre = pre + b[:, None]
    out = _activate(pre, activation).to(x.dtype)
    if not (return_final_states or final_states_out is not None):
        return out
    final = padded[..., padded.shape[-1] - (width - 1) :].to(x.dtype)  # last K-1 inputs
    if final_states_out is not None:
        final_states_out.copy_(final)
        final = final_states_out
    return out, final


def causal_conv1d_update(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    cache_seqlens: Tensor | None = None,
    conv_state_indices: Tensor | None = None,
) -> Tensor:
    """Same contract as ``nemocore.ops.causal_conv1d_update``: rolls ``conv_state`` in place."""
    ct = _compute_dtype(x)
    single = x.dim() == 2
    x3 = x.unsqueeze(-1) if single else x  # (b, C, s)
    batch, dim, s = x3.shape
    width = weight.shape[1]
    rows = (
        conv_state_indices.long()
        if conv_state_indices is not None
        else torch.arange(batch, device=x.device)
    )
    out = torch.zeros_like(x3)
    for i in range(batch):
        slot = int(rows[i])
        if slot < 0:  # padded row of a continuous batch
            continue
        state = conv_state[slot]  # (C, S)
        S = state.shape[-1]
        if cache_seqlens is None:
            history = state[:, S - (width - 1) :]
        else:
            n = int(cache_seqlens[i])
            cols = torch.remainder(torch.arange(n - (width - 1), n, device=x.device), S)
            history = state[:, cols]
        window = torch.cat([history, x3[i]], dim=-1).to(ct)  # (C, K-1+s)
        pre = F.conv1d(
            window[None],
            weight.to(ct).unsqueeze(1),
            bias.to(ct) if bias is not None else None,
            groups=dim,
        )[0]
        out[i] = _activate(pre, activation).to(x.dtype)
        if cache_seqlens is None:
            state.copy_(torch.cat([state, x3[i]], dim=-1)[:, -S:])
        else:
            for t in range(s):
                state[:, (int(cache_seqlens[i]) + t) % S] = x3[i, :, t]
    return out.squeeze(-1) if single else out
