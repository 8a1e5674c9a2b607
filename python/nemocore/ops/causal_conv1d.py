"""Depthwise causal conv1d: a drop-in for the ``causal_conv1d`` package.

Ladder (same names in ``nemocore.ref.causal_conv1d``):
    causal_conv1d_fn / causal_conv1d_update     public functions: check, cast, call the op
    nemocore::causal_conv1d_fwd / _bwd / _update torch custom ops (fake impls for compile)
    nemocore._C.causal_conv1d_*                  the C++ (CPU) and CUDA kernels

Letters: b batch, C channels (dim), L seqlen, K width, s new tokens, S conv-state length.
Weights and biases are cast to float32 (float64 for float64 inputs) before the kernels, which
accumulate in that precision whatever the activation dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nemocore import _native
from nemocore.ops import _checks

_ACTIVATIONS = (None, "silu", "swish")


def _weight_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ---- custom ops -------------------------------------------------------------------------------


@torch.library.custom_op("nemocore::causal_conv1d_fwd", mutates_args=())
def _causal_conv1d_fwd(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    seq_idx: Tensor | None,
    initial_states: Tensor | None,
    return_final_states: bool,
    silu: bool,
) -> tuple[Tensor, Tensor]:
    out = torch.empty_like(x)
    final = (
        x.new_empty(x.shape[0], x.shape[1], weight.shape[1] - 1)
        if return_final_states
        else x.new_empty(0)
    )
    threads, stream = _native.launch_args(x.device, x.numel() * weight.shape[1])
    _native.kernels().causal_conv1d_fwd(
        x,
        weight,
        bias,
        seq_idx,
        initial_states,
        out,
        final if return_final_states else None,
        silu,
        threads,
        stream,
    )
    return out, final


@_causal_conv1d_fwd.register_fake
def _(x, weight, bias, seq_idx, initial_states, return_final_states, silu):
    final_shape = (x.shape[0], x.shape[1], weight.shape[1] - 1) if return_final_states else (0,)
    return torch.empty_like(x), x.new_empty(final_shape)


@torch.library.custom_op("nemocore::causal_conv1d_bwd", mutates_args=())
def _causal_conv1d_bwd(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    seq_idx: Tensor | None,
    initial_states: Tensor | None,
    dout: Tensor,
    dfinal_states: Tensor | None,
    silu: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dx = torch.empty_like(x)
    dweight = torch.zeros_like(weight)
    dbias = torch.zeros_like(bias) if bias is not None else x.new_empty(0)
    dinit = torch.empty_like(initial_states) if initial_states is not None else x.new_empty(0)
    threads, stream = _native.launch_args(x.device, x.numel() * weight.shape[1])
    _native.kernels().causal_conv1d_bwd(
        x,
        weight,
        bias,
        seq_idx,
        initial_states,
        dout,
        dfinal_states,
        dx,
        dweight,
        dbias if bias is not None else None,
        dinit if initial_states is not None else None,
        silu,
        threads,
        stream,
    )
    return dx, dweight, dbias, dinit


@_causal_conv1d_bwd.register_fake
def _(x, weight, bias, seq_idx, initial_states, dout, dfinal_states, silu):
    return (
        torch.empty_like(x),
        torch.empty_like(weight),
        torch.empty_like(bias) if bias is not None else x.new_empty(0),
        torch.empty_like(initial_states) if initial_states is not None else x.new_empty(0),
    )


def _fwd_setup_context(ctx, inputs, output):
    x, weight, bias, seq_idx, initial_states, return_final_states, silu = inputs
    ctx.save_for_backward(x, weight, bias, seq_idx, initial_states)
    ctx.return_final_states = return_final_states
    ctx.silu = silu


def _fwd_backward(ctx, dout, dfinal):
    x, weight, bias, seq_idx, initial_states = ctx.saved_tensors
    if not ctx.return_final_states:
        dfinal = None
    dx, dweight, dbias, dinit = _causal_conv1d_bwd(
        x, weight, bias, seq_idx, initial_states, dout, dfinal, ctx.silu
    )
    return (
        dx,
        dweight,
        dbias if bias is not None else None,
        None,
        dinit if initial_states is not None else None,
        None,
        None,
    )


_causal_conv1d_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)


@torch.library.custom_op("nemocore::causal_conv1d_update", mutates_args=("conv_state",))
def _causal_conv1d_update(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    cache_seqlens: Tensor | None,
    conv_state_indices: Tensor | None,
    silu: bool,
) -> Tensor:
    # Padded rows (conv_state_indices < 0) are skipped by the kernel: they read as zeros.
    out = torch.zeros_like(x) if conv_state_indices is not None else torch.empty_like(x)
    threads, stream = _native.launch_args(x.device, x.numel() * weight.shape[1])
    _native.kernels().causal_conv1d_update(
        x, conv_state, weight, bias, cache_seqlens, conv_state_indices, out, silu, threads, stream
    )
    return out


@_causal_conv1d_update.register_fake
def _(x, conv_state, weight, bias, cache_seqlens, conv_state_indices, silu):
    return torch.empty_like(x)


# ---- public functions -------------------------------------------------------------------------


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
    """Depthwise causal conv1d, optionally followed by SiLU.

    ``y[b, c, t] = act(bias[c] + sum_k weight[c, k] * x[b, c, t - (K-1) + k])`` with inputs
    before ``t = 0`` taken from ``initial_states`` (zeros when None).

    Args:
        x: ``(batch, dim, seqlen)``, float32/float16/bfloat16/float64; any strides
            (contiguous or channel-last alike).
        weight: ``(dim, width)``.
        bias: ``(dim,)`` or None.
        seq_idx: ``(batch, seqlen)`` integer ids of packed sequences; taps never cross from
            one sequence into another. Cannot be combined with initial or final states.
        initial_states: ``(batch, dim, width - 1)``, the inputs just before ``x`` (a cached
            prefix), same dtype as ``x``.
        return_final_states: also return the last ``width - 1`` inputs of
            ``[initial_states ; x]``, i.e. the state to continue from.
        final_states_out: ``(batch, dim, width - 1)`` tensor to write the final states into.
        activation: None, ``"silu"`` or ``"swish"`` (the same as ``"silu"``).

    Returns:
        ``y: (batch, dim, seqlen)`` like ``x``, and ``final_states: (batch, dim, width - 1)``
        when ``return_final_states``.
    """
    x = _checks.tensor(x, "x", ndim=3, dtypes=_checks.FLOAT_DTYPES)
    batch, dim, seqlen = x.shape
    weight = _checks.tensor(weight, "weight", ndim=2, device=x.device)
    if weight.shape[0] != dim or weight.shape[1] < 1:
        raise ValueError(
            f"weight: expected shape ({dim}, width >= 1) for x of {_checks.describe(x)}, "
            f"got {_checks.describe(weight)}"
        )
    width = weight.shape[1]
    bias = _checks.optional_tensor(bias, "bias", shape=(dim,), device=x.device)
    _checks.choice(activation, "activation", _ACTIVATIONS)
    if seq_idx is not None:
        seq_idx = _checks.tensor(
            seq_idx,
            "seq_idx",
            shape=(batch, seqlen),
            device=x.device,
            dtypes=(torch.int32, torch.int64),
        ).to(torch.int32)
        if initial_states is not None or return_final_states:
            raise ValueError(
                "seq_idx cannot be combined with initial_states or return_final_states: with "
                "packed sequences, give each sequence its own row to carry states"
            )
    initial_states = _checks.optional_tensor(
        initial_states,
        "initial_states",
        shape=(batch, dim, width - 1),
        dtypes=(x.dtype,),
        device=x.device,
    )
    if final_states_out is not None:
        _checks.tensor(
            final_states_out,
            "final_states_out",
            shape=(batch, dim, width - 1),
            dtypes=(x.dtype,),
            device=x.device,
        )
        return_final_states = True
    wdtype = _weight_dtype(x)
    out, final = _causal_conv1d_fwd(
        x,
        weight.to(wdtype).contiguous(),
        bias.to(wdtype).contiguous() if bias is not None else None,
        seq_idx,
        initial_states,
        return_final_states,
        activation is not None,
    )
    if not return_final_states:
        return out
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
    """Causal conv1d over a few new tokens, continuing from ``conv_state``; the state rolls in
    place (the oldest inputs drop out, the new ones are appended).

    Args:
        x: ``(batch, dim)`` for one token or ``(batch, dim, s)`` for ``s`` tokens.
        conv_state: ``(batch, dim, S)`` with ``S >= width - 1``: the last ``S`` inputs of each
            sequence (so transformers' ``width``-column cache works as is). Updated in place.
            With ``conv_state_indices`` it is a pool ``(pool_size, dim, S)``.
        weight: ``(dim, width)``.
        bias: ``(dim,)`` or None.
        activation: None, ``"silu"`` or ``"swish"``.
        cache_seqlens: ``(batch,)`` int32: treat each state row as a circular buffer in which
            this many inputs were written so far (input ``i`` lives at column ``i % S``).
        conv_state_indices: ``(batch,)`` int32: row ``b`` uses state row
            ``conv_state_indices[b]``; a negative index marks a padded row, whose output is 0
            and whose state is untouched.

    Returns:
        ``(batch, dim)`` or ``(batch, dim, s)``, like ``x``.
    """
    x = _checks.tensor(x, "x", dtypes=_checks.FLOAT_DTYPES)
    if x.dim() not in (2, 3):
        raise ValueError(f"x: expected (batch, dim) or (batch, dim, s), got {_checks.describe(x)}")
    single = x.dim() == 2
    x3 = x.unsqueeze(-1) if single else x
    batch, dim, _ = x3.shape
    weight = _checks.tensor(weight, "weight", ndim=2, device=x.device)
    if weight.shape[0] != dim or weight.shape[1] < 1:
        raise ValueError(
            f"weight: expected shape ({dim}, width >= 1), got {_checks.describe(weight)}"
        )
    width = weight.shape[1]
    conv_state = _checks.tensor(
        conv_state, "conv_state", ndim=3, dtypes=(x.dtype,), device=x.device
    )
    if conv_state.shape[1] != dim or conv_state.shape[2] < width - 1:
        raise ValueError(
            f"conv_state: expected shape (batch, {dim}, S >= {width - 1}), "
            f"got {_checks.describe(conv_state)}"
        )
    if conv_state_indices is None and conv_state.shape[0] != batch:
        raise ValueError(
            f"conv_state: expected batch {batch} (or pass conv_state_indices), "
            f"got {_checks.describe(conv_state)}"
        )
    bias = _checks.optional_tensor(bias, "bias", shape=(dim,), device=x.device)
    _checks.choice(activation, "activation", _ACTIVATIONS)
    index_dtypes = (torch.int32, torch.int64)
    if cache_seqlens is not None:
        cache_seqlens = (
            _checks.tensor(
                cache_seqlens, "cache_seqlens", shape=(batch,), dtypes=index_dtypes, device=x.device
            )
            .to(torch.int32)
            .contiguous()
        )
    if conv_state_indices is not None:
        conv_state_indices = (
            _checks.tensor(
                conv_state_indices,
                "conv_state_indices",
                shape=(batch,),
                dtypes=index_dtypes,
                device=x.device,
            )
            .to(torch.int32)
            .contiguous()
        )
    wdtype = _weight_dtype(x)
    out = _causal_conv1d_update(
        x3,
        conv_state,
        weight.to(wdtype).contiguous(),
        bias.to(wdtype).contiguous() if bias is not None else None,
        cache_seqlens,
        conv_state_indices,
        activation is not None,
    )
    return out.squeeze(-1) if single else out
