"""Reference Mamba-2 SSD scan and decode step (kernels.md section 2), in plain PyTorch.

Two independent formulations of the scan share only the argument handling:

- R1, ``ssd_recurrence``: the token-by-token recurrence of kernels.md 2.1
  (``S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T``, ``y_t = S_t C_t``), a Python loop over time.
- R2, ``mamba_chunk_scan_combined``: the chunked form of kernels.md 2.2 (the four einsums of
  mamba_ssm's ``ssd_minimal``, with the stable segment sum of 2.4).

Both compute in float32 (float64 for float64 ``x``) and return ``y`` in ``x``'s dtype and the
states in float32 (float64), like the kernels.

Letters: b batch, L seqlen, H heads, P head dim, G groups, N state size, Q chunk size,
c chunks, S packed sequences.

Packed sequences (nemocore's semantics, the same in ``nemocore.ops``): every sequence is scanned
on its own, from its own initial state, so chunks never straddle two sequences.
- ``seq_idx (b, L)``: a sequence is a run of equal ids within a row. ``initial_states (b, ...)``
  is the state before the row's first sequence; later sequences of the row start from zeros.
- ``cu_seqlens (S + 1,)`` (batch 1): sequence ``s`` is ``[cu_seqlens[s], cu_seqlens[s + 1])``;
  it overrides ``seq_idx`` (mamba_ssm callers pass both, describing the same split).
  ``initial_states`` may then also be ``(S, H, P, N)``: one per sequence.
- ``final_states (b, H, P, N)``: the state after each row's last token (its last sequence).
  ``varlen_states (S, H, P, N)``: the state after each sequence (needs ``cu_seqlens``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_NO_LIMIT = (0.0, math.inf)


def compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def process_dt(
    dt: Tensor, dt_bias: Tensor | None, dt_softplus: bool, dt_limit: tuple[float, float]
) -> Tensor:
    """kernels.md 2.1, in this order: bias, softplus (the identity above 20, as in mamba_ssm),
    then the clamp, which mamba_ssm applies only when the limit is not (0, inf)."""
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = torch.where(dt <= 20.0, F.softplus(dt), dt)
    if tuple(dt_limit) != _NO_LIMIT:
        dt = dt.clamp(dt_limit[0], dt_limit[1])
    return dt


def sequences(
    batch: int, seqlen: int, seq_idx: Tensor | None, cu_seqlens: Tensor | None
) -> list[tuple[int, int, int]]:
    """The packed sequences as ``(row, start, end)``, in order (see the module docstring)."""
    if cu_seqlens is not None:
        cu = [int(v) for v in cu_seqlens.tolist()]
        return [(0, cu[s], cu[s + 1]) for s in range(len(cu) - 1)]
    if seq_idx is None or seqlen == 0:
        return [(b, 0, seqlen) for b in range(batch)]
    ids = seq_idx.cpu()
    change = (ids[:, 1:] != ids[:, :-1]).tolist()
    seqs = []
    for b in range(batch):
        starts = [0] + [t + 1 for t, c in enumerate(change[b]) if c] + [seqlen]
        seqs += [(b, starts[i], starts[i + 1]) for i in range(len(starts) - 1)]
    return seqs


# ---- R2: the chunked form ---------------------------------------------------------------------


def segsum(a: Tensor) -> Tensor:
    """``out[..., i, j] = sum_{j < r <= i} a[..., r]`` for ``j <= i``, ``-inf`` above the
    diagonal. Built by a masked cumsum rather than ``cumsum[i] - cumsum[j]``, which cancels
    badly once the cumsum is large (kernels.md 2.4)."""
    T = a.shape[-1]
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), -1)
    a = a[..., None].expand(*a.shape, T).masked_fill(~strict, 0)  # a[..., r, j] = a_r, r > j
    s = a.cumsum(-2)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device))
    return s.masked_fill(~causal, -math.inf)


def chunked_core(x, dt, A, B, C, chunk_size, init):
    """R2 for whole rows: ``x (b, L, H, P)``, ``dt (b, L, H)`` (processed), ``A (H,)``,
    ``B, C (b, L, H, N)`` (groups already broadcast to heads), ``init (b, H, P, N)``.
    Returns ``y (b, L, H, P)`` without the D term and the final states ``(b, H, P, N)``."""
    b, L, H, P = x.shape
    N, Q = B.shape[-1], chunk_size
    pad = (-L) % Q  # zero dt and x in the padded tail change nothing (kernels.md 2.2)
    x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
    dt = F.pad(dt, (0, 0, 0, pad))
    c = (L + pad) // Q
    X = (x * dt[..., None]).reshape(b, c, Q, H, P)
    Bc, Cc = B.reshape(b, c, Q, H, N), C.reshape(b, c, Q, H, N)
    a = (dt * A).reshape(b, c, Q, H).permute(0, 3, 1, 2)  # (b, H, c, Q)
    acs = a.cumsum(-1)
    # 1. Diagonal blocks: decayed causal "attention" C_l . B_s inside each chunk.
    decay = torch.exp(segsum(a))  # (b, H, c, Q, Q)
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, decay, X)
    # 2. Each chunk's own contribution to the state at its end.
    decay_to_end = torch.exp(acs[..., -1:] - acs)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, decay_to_end, X)
    # 3. State passing across chunk boundaries, as one matrix over the boundaries.
    states = torch.cat([init[:, None], states], dim=1)  # (b, c + 1, H, P, N)
    chunk_decay = torch.exp(segsum(F.pad(acs[..., -1], (1, 0))))  # (b, H, c + 1, c + 1)
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)
    states, final = states[:, :-1], states[:, -1]
    # 4. Each chunk's output from the state it starts with.
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states, torch.exp(acs))
    return (y_diag + y_off).reshape(b, c * Q, H, P)[:, :L], final


# ---- R1: the recurrence -----------------------------------------------------------------------


def recurrent_core(x, dt, A, B, C, chunk_size, init):
    """R1, same contract as ``chunked_core`` (chunk_size is unused)."""
    state, ys = init, []
    for t in range(x.shape[1]):
        state = step(state, x[:, t], dt[:, t, :, None], A[:, None, None], B[:, t], C[:, t])
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    y = torch.stack(ys, 1) if ys else x.new_zeros(x.shape)
    return y, state


def step(state, x, dt, A, B, C):
    """One token: ``state (b, H, P, N)``, ``x (b, H, P)``, ``dt (b, H, P)``, ``A (H, P, N)``,
    ``B, C (b, H, N)``. Returns the next state."""
    return state * torch.exp(dt[..., None] * A) + (dt * x)[..., None] * B[:, :, None, :]


# ---- the public functions ---------------------------------------------------------------------


def _scan(
    core,
    x,
    dt,
    A,
    B,
    C,
    chunk_size,
    D,
    z,
    dt_bias,
    initial_states,
    seq_idx,
    cu_seqlens,
    dt_softplus,
    dt_limit,
    return_final_states,
    return_varlen_states,
):
    ct = compute_dtype(x)
    batch, seqlen, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    xc = x.to(ct)
    dtc = process_dt(dt.to(ct), None if dt_bias is None else dt_bias.to(ct), dt_softplus, dt_limit)
    Bh = B.to(ct).repeat_interleave(H // G, dim=2)
    Ch = C.to(ct).repeat_interleave(H // G, dim=2)
    Ac = A.to(ct)
    seqs = sequences(batch, seqlen, seq_idx, cu_seqlens)
    per_seq_init = (
        initial_states is not None
        and cu_seqlens is not None
        and (initial_states.shape[0] == len(seqs) != batch)
    )
    zeros = x.new_zeros((H, P, N), dtype=ct)
    if seq_idx is None and cu_seqlens is None:  # whole rows at once: the benchmark's peer
        init = zeros.expand(batch, H, P, N) if initial_states is None else initial_states.to(ct)
        y, final = core(xc, dtc, Ac, Bh, Ch, chunk_size, init)
        finals = list(final)
    else:
        y, finals, seen = torch.zeros_like(xc), [], set()
        for s, (row, t0, t1) in enumerate(seqs):
            if initial_states is None or (row in seen and not per_seq_init):
                init = zeros
            else:
                init = initial_states[s if per_seq_init else row].to(ct)
            seen.add(row)
            part = slice(t0, t1)
            ys, fs = core(
                xc[row : row + 1, part],
                dtc[row : row + 1, part],
                Ac,
                Bh[row : row + 1, part],
                Ch[row : row + 1, part],
                chunk_size,
                init[None],
            )
            y[row, part] = ys[0]
            finals.append(fs[0])
    if D is not None:
        Dc = D.to(ct)
        y = y + xc * (Dc[:, None] if Dc.dim() == 1 else Dc)
    if z is not None:
        y = y * F.silu(z.to(ct))
    out = [y.to(x.dtype)]
    if return_final_states:
        last = {row: f for (row, _, _), f in zip(seqs, finals)}
        out.append(torch.stack([last[b] for b in range(batch)]))
    if return_varlen_states:
        out.append(torch.stack(finals))
    return out[0] if len(out) == 1 else tuple(out)


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
    """R2: same contract as ``nemocore.ops.mamba_chunk_scan_combined``."""
    return _scan(
        chunked_core,
        x,
        dt,
        A,
        B,
        C,
        chunk_size,
        D,
        z,
        dt_bias,
        initial_states,
        seq_idx,
        cu_seqlens,
        dt_softplus,
        dt_limit,
        return_final_states,
        return_varlen_states,
    )


def ssd_recurrence(
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
    """R1: the same contract as ``mamba_chunk_scan_combined`` (``chunk_size`` is unused),
    computed token by token. Slow: for small shapes and as ground truth."""
    return _scan(
        recurrent_core,
        x,
        dt,
        A,
        B,
        C,
        chunk_size,
        D,
        z,
        dt_bias,
        initial_states,
        seq_idx,
        cu_seqlens,
        dt_softplus,
        dt_limit,
        return_final_states,
        return_varlen_states,
    )


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
    """Same contract as ``nemocore.ops.selective_state_update`` (kernels.md 2.7): one token,
    ``state`` updated in place."""
    if state.dim() == 3:  # mamba_ssm's single-head form: add the head dimension
        x, dt, B, C = x[:, None], dt[:, None], B[:, None], C[:, None]
        z = None if z is None else z[:, None]
        A, D = A[None], None if D is None else D[None]
        dt_bias = None if dt_bias is None else dt_bias[None]
        return selective_state_update(
            state[:, None],
            x,
            dt,
            A,
            B,
            C,
            D,
            z,
            dt_bias,
            dt_softplus,
            state_batch_indices,
            dt_limit,
        )[:, 0]
    ct = compute_dtype(x)
    H, G = x.shape[1], B.shape[1]
    rows = (
        torch.arange(x.shape[0], device=x.device)
        if state_batch_indices is None
        else state_batch_indices.long()
    )
    live = rows >= 0  # a negative index marks a padded row: no update, output 0
    s = state[rows.clamp(min=0)].to(ct)
    if dt_bias is not None and dt_bias.dim() == 1:
        dt_bias = dt_bias[:, None]
    dtc = process_dt(dt.to(ct), None if dt_bias is None else dt_bias.to(ct), dt_softplus, dt_limit)
    Bh = B.to(ct).repeat_interleave(H // G, dim=1)
    Ch = C.to(ct).repeat_interleave(H // G, dim=1)
    s = step(s, x.to(ct), dtc, A.to(ct), Bh, Ch)
    y = torch.einsum("bhpn,bhn->bhp", s, Ch)
    if D is not None:
        y = y + x.to(ct) * (D[:, None] if D.dim() == 1 else D).to(ct)
    if z is not None:
        y = y * F.silu(z.to(ct))
    state[rows[live]] = s[live].to(state.dtype)
    return torch.where(live[:, None, None], y, 0).to(x.dtype)
