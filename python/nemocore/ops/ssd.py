"""Mamba-2 SSD chunked scan and decode step: a drop-in for mamba_ssm's functions.

Ladder (same names in ``nemocore.ref``):
    mamba_chunk_scan_combined / selective_state_update   public functions: check, cast, call
    nemocore::ssd_chunk_scan_fwd / _bwd / ssd_state_update  torch custom ops (fake impls)
    nemocore._C.ssd_fwd / ssd_bwd / ssd_state_update      the C++ kernels: csrc/cpu for CPU
                                                          tensors, csrc/cuda for CUDA tensors
                                                          (build_info()["cuda_ssd_*"] says
                                                          which CUDA ones this build has)

Letters: b batch, L seqlen, H heads, P head dim, G groups, N state size, S packed sequences.

Dtypes: ``x``, ``B``, ``C``, ``z`` and ``y`` share one dtype (float32, bfloat16, float16 or
float64; ``B``, ``C``, ``z`` are cast to ``x``'s). ``dt``, ``A``, ``D``, ``dt_bias`` and the
states are float32 (float64 for float64 ``x``); the kernels compute in that precision whatever
``x``'s dtype, and final states come back in it, as in mamba_ssm. The kernels read any strides
of ``x``, ``dt``, ``B``, ``C``, ``z`` and ``initial_states``; the small per-head parameters are
made contiguous here.

Packed sequences follow nemocore's semantics, documented in ``nemocore.ref.ssd``: each sequence
is scanned on its own, so chunks never straddle two sequences, and ``initial_states`` may be
given per sequence with ``cu_seqlens``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nemocore import _native
from nemocore.ops import _checks
from nemocore.ref.ssd import compute_dtype, sequences

_NO_LIMIT = (0.0, math.inf)
_INDEX_DTYPES = (torch.int32, torch.int64)


def _seq_table(x, chunk_size, seq_idx, cu_seqlens, init_rows):
    """The kernels' sequence table (see ``SsdSeqColumn`` in ssd.h), the total chunk count and,
    per batch row, the index of its last sequence."""
    batch, seqlen = x.shape[0], x.shape[1]
    if cu_seqlens is not None:
        cu = cu_seqlens.tolist()
        if cu[0] != 0 or cu[-1] != seqlen or any(b < a for a, b in zip(cu, cu[1:])):
            raise ValueError(
                f"cu_seqlens: expected non-decreasing offsets from 0 to seqlen = {seqlen}, got {cu}"
            )
    seqs = sequences(batch, seqlen, seq_idx, cu_seqlens)
    rows, first, chunks, last = [], set(), 0, {}
    for s, (row, start, end) in enumerate(seqs):
        # "seq": one initial state per sequence; "row": the row's state starts its first one.
        init = s if init_rows == "seq" else (row if init_rows == "row" and row not in first else -1)
        first.add(row)
        rows.append((row, start, end, init, chunks))
        chunks += -(-(end - start) // chunk_size)
        last[row] = s
    table = torch.tensor(rows, dtype=torch.int64).reshape(len(rows), 5).to(x.device)
    last_of_row = torch.tensor([last[b] for b in range(batch)], dtype=torch.int64, device=x.device)
    return table, chunks, last_of_row


def _init_mode(initial_states, batch, cu_seqlens):
    if initial_states is None:
        return "none"
    per_seq = cu_seqlens is not None and initial_states.shape[0] == cu_seqlens.shape[0] - 1
    return "seq" if per_seq and initial_states.shape[0] != batch else "row"


def _config(x, chunk_size, num_chunks, dt_softplus, dt_min, dt_max, has_limit):
    threads, stream = _native.launch_args(x.device, x.numel() * chunk_size)
    return _native.kernels().SsdScanConfig(
        chunk_size, num_chunks, dt_softplus, has_limit, dt_min, dt_max, threads, stream
    )


# ---- custom ops -------------------------------------------------------------------------------


@torch.library.custom_op("nemocore::ssd_chunk_scan_fwd", mutates_args=())
def _ssd_chunk_scan_fwd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    dt_bias: Tensor | None,
    initial_states: Tensor | None,
    seq_idx: Tensor | None,
    cu_seqlens: Tensor | None,
    chunk_size: int,
    dt_softplus: bool,
    dt_min: float,
    dt_max: float,
    has_limit: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    mode = _init_mode(initial_states, x.shape[0], cu_seqlens)
    table, chunks, last = _seq_table(x, chunk_size, seq_idx, cu_seqlens, mode)
    H, P = x.shape[2], x.shape[3]
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    finals = x.new_empty((table.shape[0], H, P, B.shape[-1]), dtype=dt.dtype)
    cfg = _config(x, chunk_size, chunks, dt_softplus, dt_min, dt_max, has_limit)
    workspace = None
    if x.is_cuda:  # ssd_cuda_fwd_workspace_elems in ssd.h: dt and its cumsum, chunk states
        N = B.shape[-1]
        workspace = x.new_empty((chunks * H * (2 * chunk_size + P * N),), dtype=dt.dtype)
    _native.kernels().ssd_fwd(
        x, dt, A, B, C, D, z, dt_bias, table, initial_states, out, finals, cfg, workspace
    )
    varlen = finals if cu_seqlens is not None else finals.new_empty((0, H, P, B.shape[-1]))
    return out, finals.index_select(0, last), varlen


@_ssd_chunk_scan_fwd.register_fake
def _(x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, cu_seqlens, *args):
    state = (x.shape[2], x.shape[3], B.shape[-1])
    nseq = cu_seqlens.shape[0] - 1 if cu_seqlens is not None else 0
    return (
        torch.empty(x.shape, dtype=x.dtype, device=x.device),
        x.new_empty((x.shape[0], *state), dtype=dt.dtype),
        x.new_empty((nseq, *state), dtype=dt.dtype),
    )


@torch.library.custom_op("nemocore::ssd_chunk_scan_bwd", mutates_args=())
def _ssd_chunk_scan_bwd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    dt_bias: Tensor | None,
    initial_states: Tensor | None,
    seq_idx: Tensor | None,
    cu_seqlens: Tensor | None,
    dout: Tensor,
    dfinal: Tensor | None,
    dvarlen: Tensor | None,
    chunk_size: int,
    dt_softplus: bool,
    dt_min: float,
    dt_max: float,
    has_limit: bool,
) -> list[Tensor]:
    mode = _init_mode(initial_states, x.shape[0], cu_seqlens)
    table, chunks, last = _seq_table(x, chunk_size, seq_idx, cu_seqlens, mode)
    H, P, N = x.shape[2], x.shape[3], B.shape[-1]
    dseq = None
    if dfinal is not None or (dvarlen is not None and dvarlen.shape[0] > 0):
        dseq = x.new_zeros((table.shape[0], H, P, N), dtype=dt.dtype)
        if dfinal is not None:
            dseq.index_add_(0, last, dfinal.to(dt.dtype))
        if dvarlen is not None and dvarlen.shape[0] > 0:
            dseq += dvarlen.to(dt.dtype)
    grads = [
        torch.empty(x.shape, dtype=x.dtype, device=x.device),
        torch.empty(dt.shape, dtype=dt.dtype, device=x.device),
        torch.empty_like(A),
        torch.empty(B.shape, dtype=x.dtype, device=x.device),
        torch.empty(C.shape, dtype=x.dtype, device=x.device),
        torch.empty_like(D) if D is not None else x.new_empty(0),
        torch.empty(x.shape, dtype=x.dtype, device=x.device) if z is not None else x.new_empty(0),
        torch.empty_like(dt_bias) if dt_bias is not None else x.new_empty(0),
        torch.zeros_like(initial_states) if initial_states is not None else x.new_empty(0),
    ]
    given = (D, z, dt_bias, initial_states)
    passed = (*grads[:5], *(g if t is not None else None for g, t in zip(grads[5:], given)))
    cfg = _config(x, chunk_size, chunks, dt_softplus, dt_min, dt_max, has_limit)
    workspace = None
    if x.is_cuda:
        elems = _cuda_bwd_workspace_elems(chunks, H, B.shape[-2], chunk_size, P, N)
        workspace = x.new_empty((elems,), dtype=dt.dtype)
    _native.kernels().ssd_bwd(
        x, dt, A, B, C, D, z, dt_bias, table, initial_states, dout, dseq, passed, cfg, workspace
    )
    return grads


def _cuda_bwd_workspace_elems(chunks, H, G, Q, P, N):
    """ssd_cuda_bwd_workspace_elems in ssd.h (the binding checks the size): the forward's
    workspace, then per (chunk, head) dy, the state gradient and per-step and per-32-step-tile
    partial sums, and per (chunk, group) C B^T and its gradient."""
    tiles = -(-Q // 32)
    per_head = Q * P + P * N + 3 * Q + 2 * tiles * Q + tiles * P + 2
    return chunks * H * (2 * Q + P * N) + chunks * (H * per_head + G * 2 * Q * Q)


@_ssd_chunk_scan_bwd.register_fake
def _(x, dt, A, B, C, D, z, dt_bias, initial_states, *args):
    return [
        torch.empty(x.shape, dtype=x.dtype, device=x.device),
        torch.empty(dt.shape, dtype=dt.dtype, device=x.device),
        torch.empty_like(A),
        torch.empty(B.shape, dtype=x.dtype, device=x.device),
        torch.empty(C.shape, dtype=x.dtype, device=x.device),
        torch.empty_like(D) if D is not None else x.new_empty(0),
        torch.empty(x.shape, dtype=x.dtype, device=x.device) if z is not None else x.new_empty(0),
        torch.empty_like(dt_bias) if dt_bias is not None else x.new_empty(0),
        torch.empty_like(initial_states) if initial_states is not None else x.new_empty(0),
    ]


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:11])
    ctx.config = inputs[11:]


def _backward(ctx, dout, dfinal, dvarlen):
    x, dt, A, B, C, D, z, dt_bias, init, seq_idx, cu_seqlens = ctx.saved_tensors
    grads = _ssd_chunk_scan_bwd(
        x,
        dt,
        A,
        B,
        C,
        D,
        z,
        dt_bias,
        init,
        seq_idx,
        cu_seqlens,
        dout,
        dfinal,
        dvarlen,
        *ctx.config,
    )
    present = (True,) * 5 + (D is not None, z is not None, dt_bias is not None, init is not None)
    return (*(g if p else None for g, p in zip(grads, present)),) + (None,) * 7


_ssd_chunk_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("nemocore::ssd_state_update", mutates_args=("state",))
def _ssd_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    dt_bias: Tensor | None,
    state_batch_indices: Tensor | None,
    dt_softplus: bool,
    dt_min: float,
    dt_max: float,
    has_limit: bool,
) -> Tensor:
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    threads, stream = _native.launch_args(x.device, 4 * x.numel() * state.shape[-1])
    _native.kernels().ssd_state_update(
        state,
        x,
        dt,
        A,
        B,
        C,
        D,
        z,
        dt_bias,
        state_batch_indices,
        out,
        dt_softplus,
        has_limit,
        dt_min,
        dt_max,
        threads,
        stream,
    )
    return out


@_ssd_state_update.register_fake
def _(state, x, *args):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


# ---- public functions -------------------------------------------------------------------------


def _limit(dt_limit) -> tuple[float, float, bool]:
    if len(dt_limit) != 2 or not dt_limit[0] <= dt_limit[1]:
        raise ValueError(f"dt_limit: expected (low, high) with low <= high, got {dt_limit!r}")
    lo, hi = float(dt_limit[0]), float(dt_limit[1])
    # mamba_ssm clamps only when the limit is not the default (0, inf): keep its semantics.
    return lo, hi, (lo, hi) != _NO_LIMIT


def _param(t, name, shape, acc, device) -> Tensor | None:
    """A small per-head parameter, checked, in the compute dtype and contiguous."""
    t = _checks.optional_tensor(t, name, shape=shape, dtypes=_checks.FLOAT_DTYPES, device=device)
    return None if t is None else t.to(acc).contiguous()


def _io(t, name, shape, x) -> Tensor | None:
    t = _checks.optional_tensor(t, name, shape=shape, dtypes=_checks.FLOAT_DTYPES, device=x.device)
    return None if t is None else t.to(x.dtype)


def _groups(B: Tensor, name: str, nheads: int) -> int:
    groups = B.shape[-2]
    if groups < 1 or nheads % groups:
        raise ValueError(
            f"{name}: ngroups = {groups} must divide nheads = {nheads}, got {_checks.describe(B)}"
        )
    return groups


def mamba_chunk_scan_combined(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    initial_states: Tensor | None = None,
    seq_idx: Tensor | None = None,
    cu_seqlens: Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = _NO_LIMIT,
    return_final_states: bool = False,
    return_varlen_states: bool = False,
):
    """The Mamba-2 SSD scan, chunked (kernels.md 2.1-2.2), with mamba_ssm's signature.

    Per head ``h`` (group ``g = h // (H/G)``): ``dt = clamp(softplus(dt + dt_bias))``,
    ``S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T``, ``y_t = (S_t C_t + D x_t) * silu(z_t)``.

    Args:
        x: ``(b, L, H, P)``; any strides.
        dt: ``(b, L, H)``, the raw step sizes.
        A: ``(H,)``.
        B, C: ``(b, L, G, N)``, ``G`` dividing ``H``.
        chunk_size: ``Q``; changes rounding only.
        D: ``(H,)`` or ``(H, P)``, or None.
        z: like ``x`` (the output is gated by ``silu(z)``), or None.
        dt_bias: ``(H,)``, or None.
        initial_states: ``(b, H, P, N)``: the state before each row's first sequence; with
            ``cu_seqlens`` also ``(S, H, P, N)``: one per sequence.
        seq_idx: ``(b, L)`` integer ids of packed sequences (runs of equal ids).
        cu_seqlens: ``(S + 1,)`` sequence offsets (batch 1); overrides ``seq_idx``.
        dt_softplus: apply softplus (the identity above 20) after the bias.
        dt_limit: clamp range for dt; the default ``(0, inf)`` means no clamp (mamba_ssm).
        return_final_states: also return ``(b, H, P, N)``, the state after each row.
        return_varlen_states: also return ``(S, H, P, N)``, the state after each sequence.

    Returns:
        ``y`` like ``x``; then ``final_states`` and/or ``varlen_states`` when asked (float32,
        float64 for float64 ``x``), in mamba_ssm's order.
    """
    x = _checks.tensor(x, "x", ndim=4, dtypes=_checks.FLOAT_DTYPES)
    batch, seqlen, H, P = x.shape
    acc, dev = compute_dtype(x), x.device
    B = _io(B, "B", (batch, seqlen, None, None), x)
    G = _groups(B, "B", H)
    N = B.shape[-1]
    C = _io(C, "C", (batch, seqlen, G, N), x)
    dt = _checks.tensor(dt, "dt", shape=(batch, seqlen, H), dtypes=_checks.FLOAT_DTYPES, device=dev)
    A = _param(A, "A", (H,), acc, dev)
    if A is None:
        raise TypeError("A: expected a torch.Tensor, got None")
    if D is not None and getattr(D, "dim", lambda: 0)() == 2:
        D = _param(D, "D", (H, P), acc, dev)
    else:
        D = _param(D, "D", (H,), acc, dev)
    z = _io(z, "z", (batch, seqlen, H, P), x)
    dt_bias = _param(dt_bias, "dt_bias", (H,), acc, dev)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    if seq_idx is not None:
        _checks.tensor(seq_idx, "seq_idx", shape=(batch, seqlen), dtypes=_INDEX_DTYPES, device=dev)
    nseq = batch
    if cu_seqlens is not None:
        _checks.tensor(cu_seqlens, "cu_seqlens", ndim=1, dtypes=_INDEX_DTYPES, device=dev)
        if batch != 1 or cu_seqlens.shape[0] < 2:
            raise ValueError(
                f"cu_seqlens: needs batch 1 and at least 2 offsets, got x of {_checks.describe(x)}"
                f" and cu_seqlens of {_checks.describe(cu_seqlens)}"
            )
        nseq = cu_seqlens.shape[0] - 1
    elif return_varlen_states:
        raise ValueError("return_varlen_states: needs cu_seqlens")
    if initial_states is not None:
        initial_states = _checks.tensor(
            initial_states,
            "initial_states",
            shape=(None, H, P, N),
            dtypes=_checks.FLOAT_DTYPES,
            device=dev,
        ).to(acc)
        if initial_states.shape[0] not in (batch, nseq):
            raise ValueError(
                f"initial_states: expected ({batch}, {H}, {P}, {N}) (or one per sequence with "
                f"cu_seqlens), got {_checks.describe(initial_states)}"
            )
    lo, hi, has_limit = _limit(dt_limit)
    y, final, varlen = _ssd_chunk_scan_fwd(
        x,
        dt.to(acc),
        A,
        B,
        C,
        D,
        z,
        dt_bias,
        initial_states,
        seq_idx,
        cu_seqlens,
        chunk_size,
        dt_softplus,
        lo,
        hi,
        has_limit,
    )
    out = [y]
    if return_final_states:
        out.append(final)
    if return_varlen_states:
        out.append(varlen)
    return y if len(out) == 1 else tuple(out)


def _per_dim(t, name, H, P, acc, dev) -> Tensor | None:
    """``(H, P)`` or ``(H,)`` (broadcast along P, as a stride-0 view) in the compute dtype."""
    if t is not None and isinstance(t, Tensor) and t.dim() == 1:
        t = _checks.tensor(t, name, shape=(H,), dtypes=_checks.FLOAT_DTYPES, device=dev)
        return t.to(acc)[:, None].expand(H, P)
    t = _checks.optional_tensor(t, name, shape=(H, P), dtypes=_checks.FLOAT_DTYPES, device=dev)
    return None if t is None else t.to(acc)


def selective_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
    state_batch_indices: Tensor | None = None,
    dt_limit: tuple[float, float] = _NO_LIMIT,
) -> Tensor:
    """One Mamba-2 decoding step (kernels.md 2.7), mamba_ssm's signature plus ``dt_limit``.

    ``dt = clamp(softplus(dt + dt_bias))``; ``state = state * exp(dt A) + dt x B^T`` in place;
    returns ``(state C + D x) * silu(z)``. Unlike mamba_ssm, ``dt_limit`` is applied here too,
    so decode matches the scan (model.md 3.2.1). The kernel reads every argument through its
    strides (stride-0 broadcasts of ``A``, ``dt``, ``D``, ``dt_bias`` are never materialised)
    and updates ``state`` in place whatever its strides; it computes in float32 (float64 for
    float64 ``x``).

    Args:
        state: ``(b, H, P, N)`` float32 or ``x``'s dtype, updated in place; with
            ``state_batch_indices`` a pool ``(pool, H, P, N)``. mamba_ssm's single-head form
            (``state (b, P, N)``, ``x (b, P)``, ...) is accepted too.
        x: ``(b, H, P)``.
        dt: ``(b, H, P)``, usually a stride-0 broadcast of ``(b, H)``.
        A: ``(H, P, N)``, usually a stride-0 broadcast of ``(H,)``.
        B, C: ``(b, G, N)``.
        D, dt_bias: ``(H, P)`` or ``(H,)``, or None.
        z: like ``x``, or None.
        state_batch_indices: ``(b,)``: the state row of each batch row; negative marks a padded
            row (state untouched, output zero).
    """
    state = _checks.tensor(state, "state", dtypes=_checks.FLOAT_DTYPES)
    if state.dim() == 3:  # mamba_ssm's single-head form

        def head(t):
            return None if t is None else t.unsqueeze(1)

        out = selective_state_update(
            state.unsqueeze(1),
            head(x),
            head(dt),
            A.unsqueeze(0),
            head(B),
            head(C),
            None if D is None else D.unsqueeze(0),
            head(z),
            None if dt_bias is None else dt_bias.unsqueeze(0),
            dt_softplus,
            state_batch_indices,
            dt_limit,
        )
        return out[:, 0]
    x = _checks.tensor(x, "x", ndim=3, dtypes=_checks.FLOAT_DTYPES, device=state.device)
    batch, H, P = x.shape
    acc, dev = compute_dtype(x), x.device
    if state.dim() != 4 or tuple(state.shape[1:3]) != (H, P):
        raise ValueError(f"state: expected (batch, {H}, {P}, N), got {_checks.describe(state)}")
    if state.dtype not in (torch.float32, x.dtype):
        raise TypeError(f"state: expected float32 or {x.dtype}, got {_checks.describe(state)}")
    N = state.shape[3]
    B = _io(B, "B", (batch, None, N), x)
    G = _groups(B, "B", H)
    C = _io(C, "C", (batch, G, N), x)
    dt = _checks.tensor(dt, "dt", shape=(batch, H, P), dtypes=_checks.FLOAT_DTYPES, device=dev)
    A = _checks.tensor(A, "A", shape=(H, P, N), dtypes=_checks.FLOAT_DTYPES, device=dev)
    z = _io(z, "z", (batch, H, P), x)
    if state_batch_indices is not None:
        state_batch_indices = (
            _checks.tensor(
                state_batch_indices,
                "state_batch_indices",
                shape=(batch,),
                dtypes=_INDEX_DTYPES,
                device=dev,
            )
            .to(torch.int32)
            .contiguous()
        )
    elif state.shape[0] != batch:
        raise ValueError(
            f"state: expected batch {batch} (or pass state_batch_indices), "
            f"got {_checks.describe(state)}"
        )
    lo, hi, has_limit = _limit(dt_limit)
    return _ssd_state_update(
        state,
        x,
        dt.to(acc),
        A.to(acc),
        B,
        C,
        _per_dim(D, "D", H, P, acc, dev),
        z,
        _per_dim(dt_bias, "dt_bias", H, P, acc, dev),
        state_batch_indices,
        dt_softplus,
        lo,
        hi,
        has_limit,
    )
