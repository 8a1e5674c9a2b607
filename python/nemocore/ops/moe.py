"""MoE ops: grouped GEMM (a drop-in for the grouped_gemm package's ``gmm``) and token
permute/unpermute (kernels.md section 3), with hand-written backward passes.

Ladder (same names in ``nemocore.ref``):
    grouped_mm / moe_permute / moe_unpermute     public functions: check, cast, call
    nemocore::grouped_mm, ::grouped_mm_wgrad,    torch custom ops (fake impls, autograd)
    ::moe_permute, ::moe_unpermute, ::moe_gather,
    ::moe_combine, ::moe_combine_wgrad
    nemocore._C.grouped_mm, ...                  the C++ kernels (csrc/cpu/kernels/grouped_mm.cpp,
                                                 moe_permute.cpp) and their CUDA twins
                                                 (build_info()["cuda_moe"])

Letters: T tokens, k top-k, E experts, d width; the grouped operand has R = T*k rows.

A layer runs ``moe_permute`` -> ``grouped_mm`` (up) -> activation -> ``grouped_mm`` (down) ->
``moe_unpermute``. ``tokens_per_expert`` comes back as an int64 CPU tensor, the form
``grouped_mm``'s ``batch_sizes`` takes (as in grouped_gemm), so the GEMMs can size their launch
without reading device memory. Matrices are float32, bfloat16, float16 or float64, computed in
float32 (float64 for float64) and rounded once; combine weights are float32 (float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nemocore import _native
from nemocore.ops import _checks

_ID_DTYPES = (torch.int32, torch.int64)


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _offsets(batch_sizes: Tensor, device: torch.device) -> Tensor:
    """(E + 1,) int64 row offsets on the kernels' device, from (E,) rows per expert."""
    offsets = torch.zeros(batch_sizes.shape[0] + 1, dtype=torch.int64)
    torch.cumsum(batch_sizes, 0, out=offsets[1:])
    return offsets.to(device, non_blocking=True)


# ---- grouped GEMM -----------------------------------------------------------------------------


@torch.library.custom_op("nemocore::grouped_mm", mutates_args=())
def _grouped_mm(a: Tensor, b: Tensor, batch_sizes: Tensor, trans_b: bool) -> Tensor:
    n = b.shape[1] if trans_b else b.shape[2]
    out = torch.empty((a.shape[0], n), dtype=a.dtype, device=a.device)
    threads, stream = _native.launch_args(a.device, a.numel() * n)
    offsets = _offsets(batch_sizes, a.device)
    _native.kernels().grouped_mm(a, b, offsets, out, trans_b, threads, stream)
    return out


@_grouped_mm.register_fake
def _(a, b, batch_sizes, trans_b):
    return a.new_empty((a.shape[0], b.shape[1] if trans_b else b.shape[2]))


@torch.library.custom_op("nemocore::grouped_mm_wgrad", mutates_args=())
def _grouped_mm_wgrad(x: Tensor, y: Tensor, batch_sizes: Tensor) -> Tensor:
    out = torch.empty(
        (batch_sizes.shape[0], x.shape[1], y.shape[1]), dtype=x.dtype, device=x.device
    )
    threads, stream = _native.launch_args(x.device, x.numel() * y.shape[1])
    offsets = _offsets(batch_sizes, x.device)
    _native.kernels().grouped_mm_wgrad(x, y, offsets, out, threads, stream)
    return out


@_grouped_mm_wgrad.register_fake
def _(x, y, batch_sizes):
    return x.new_empty((batch_sizes.shape[0], x.shape[1], y.shape[1]))


def _grouped_mm_setup(ctx, inputs, output):
    a, b, batch_sizes, trans_b = inputs
    ctx.save_for_backward(a, b, batch_sizes)
    ctx.trans_b = trans_b


def _grouped_mm_backward(ctx, dout):
    a, b, batch_sizes = ctx.saved_tensors
    dout = dout.contiguous()
    da = db = None
    if ctx.needs_input_grad[0]:  # da = dout @ op(b)^T: the same GEMM with the other transpose
        da = _grouped_mm(dout, b, batch_sizes, not ctx.trans_b)
    if ctx.needs_input_grad[1]:  # db[e] = a_e^T dout_e, or its transpose for (E, N, K) weights
        db = (
            _grouped_mm_wgrad(dout, a, batch_sizes)
            if ctx.trans_b
            else _grouped_mm_wgrad(a, dout, batch_sizes)
        )
    return da, db, None, None


_grouped_mm.register_autograd(_grouped_mm_backward, setup_context=_grouped_mm_setup)


@torch.library.custom_op("nemocore::grouped_mm_gathered", mutates_args=())
def _grouped_mm_gathered(
    a: Tensor, a_rows: Tensor, b: Tensor, batch_sizes: Tensor, trans_b: bool
) -> Tensor:
    n = b.shape[1] if trans_b else b.shape[2]
    out = torch.empty((a_rows.shape[0], n), dtype=a.dtype, device=a.device)
    threads, stream = _native.launch_args(a.device, a_rows.shape[0] * a.shape[1] * n)
    offsets = _offsets(batch_sizes, a.device)
    _native.kernels().grouped_mm(a, b, offsets, out, trans_b, threads, stream, a_rows)
    return out


@_grouped_mm_gathered.register_fake
def _(a, a_rows, b, batch_sizes, trans_b):
    return a.new_empty((a_rows.shape[0], b.shape[1] if trans_b else b.shape[2]))


def _gathered_setup(ctx, inputs, output):
    a, a_rows, b, batch_sizes, trans_b = inputs
    ctx.save_for_backward(a, a_rows, b, batch_sizes)
    ctx.trans_b = trans_b


def _gathered_backward(ctx, dout):
    a, a_rows, b, batch_sizes = ctx.saved_tensors
    dout = dout.contiguous()
    da = db = None
    if ctx.needs_input_grad[0]:  # the gradient of each gathered row goes back to its source row
        drows = _grouped_mm(dout, b, batch_sizes, not ctx.trans_b)
        da = torch.zeros_like(a).index_add_(0, a_rows, drows)
    if ctx.needs_input_grad[2]:
        rows = _gather(a, a_rows, None)
        db = (
            _grouped_mm_wgrad(dout, rows, batch_sizes)
            if ctx.trans_b
            else _grouped_mm_wgrad(rows, dout, batch_sizes)
        )
    return da, None, db, None, None


_grouped_mm_gathered.register_autograd(_gathered_backward, setup_context=_gathered_setup)


def grouped_mm(
    a: Tensor,
    b: Tensor,
    batch_sizes: Tensor,
    trans_b: bool = False,
    *,
    a_rows: Tensor | None = None,
) -> Tensor:
    """One matmul per expert over the expert's rows, as a single op (grouped_gemm's ``gmm``).

    Args:
        a: (T, K) rows sorted by expert (the first ``batch_sizes[0]`` rows belong to expert 0,
            and so on), float32, bfloat16, float16 or float64.
        b: (E, K, N) per-expert weights, or (E, N, K) with ``trans_b`` (an ``nn.Linear``-style
            (out, in) stack); same dtype and device as ``a``.
        batch_sizes: (E,) int64 rows per expert, on the CPU (as in grouped_gemm); zeros allowed.
        trans_b: multiply by ``b[e].T``.
        a_rows: (R,) int64 row indices into ``a``, or None. With it the grouped operand is
            ``a[a_rows]`` (R rows sorted by expert) gathered inside the GEMM's load, so the MoE
            permute never writes its (R, K) copy: pass the tokens (T, K) as ``a`` and
            ``moe_permute``'s source token of each row. Its gradient adds the rows back with
            ``index_add_`` (deterministic on the CPU; on CUDA when
            ``torch.use_deterministic_algorithms`` is on).

    Returns:
        (T, N) ((R, N) with ``a_rows``) in ``a``'s dtype: ``out[rows of e] = a[rows of e] @
        b[e]`` (``b[e].T``), accumulated in float32 (float64). Differentiable in ``a`` and ``b``.
    """
    _checks.tensor(a, "a", ndim=2, dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor(b, "b", ndim=3, dtypes=(a.dtype,), device=a.device)
    E = b.shape[0]
    k = b.shape[2] if trans_b else b.shape[1]
    if k != a.shape[1]:
        layout = "(num_experts, n, k)" if trans_b else "(num_experts, k, n)"
        raise ValueError(
            f"b: expected {layout} with k = a.shape[1] = {a.shape[1]}, got {_checks.describe(b)}"
            + ("" if trans_b else "; pass trans_b=True for (out, in) weights")
        )
    if a_rows is None:
        return _grouped_mm(a, b, _batch_sizes(batch_sizes, E, a.shape[0]), bool(trans_b))
    _checks.tensor(a_rows, "a_rows", ndim=1, dtypes=(torch.int64,), device=a.device)
    _check_cuda_ids(a_rows, a.shape[0], "a_rows: row indices", "a.shape[0]")
    batch_sizes = _batch_sizes(batch_sizes, E, a_rows.shape[0])
    return _grouped_mm_gathered(a, a_rows.contiguous(), b, batch_sizes, bool(trans_b))


def _check_cuda_ids(ids: Tensor, bound: int, what: str, bound_name: str) -> None:
    """Raises unless every id lies in [0, bound). Only CUDA tensors are read here (a device
    sync); the CPU kernels check their own ids. Skipped under torch.compile."""
    if ids.is_cuda and ids.numel() and not torch.compiler.is_compiling():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= bound:
            raise ValueError(
                f"{what} must lie in [0, {bound_name} = {bound}), got ids from {lo} to {hi}"
            )


def _batch_sizes(batch_sizes: Tensor, num_experts: int, rows: int) -> Tensor:
    _checks.tensor(batch_sizes, "batch_sizes", shape=(num_experts,), dtypes=_ID_DTYPES)
    if batch_sizes.device.type != "cpu":
        raise ValueError(
            "batch_sizes: expected a CPU tensor (as in grouped_gemm; moe_permute returns its "
            f"tokens_per_expert on the CPU), got {_checks.describe(batch_sizes)}"
        )
    batch_sizes = batch_sizes.to(torch.int64)
    if not torch.compiler.is_compiling():
        if num_experts and int(batch_sizes.min()) < 0:
            raise ValueError(f"batch_sizes: rows per expert must be >= 0, got {batch_sizes}")
        if int(batch_sizes.sum()) != rows:
            raise ValueError(
                f"batch_sizes: sums to {int(batch_sizes.sum())}, but a has {rows} rows"
            )
    return batch_sizes


# ---- row gather and combine (the kernels under permute and unpermute) -------------------------


@torch.library.custom_op("nemocore::moe_gather", mutates_args=())
def _gather(src: Tensor, index: Tensor, scale: Tensor | None) -> Tensor:
    out = torch.empty((index.shape[0], src.shape[1]), dtype=src.dtype, device=src.device)
    threads, stream = _native.launch_args(src.device, out.numel())
    _native.kernels().moe_gather(src, index, scale, out, threads, stream)
    return out


@_gather.register_fake
def _(src, index, scale):
    return src.new_empty((index.shape[0], src.shape[1]))


@torch.library.custom_op("nemocore::moe_combine", mutates_args=())
def _combine(src: Tensor, row_id_map: Tensor, weights: Tensor | None) -> Tensor:
    out = torch.empty((row_id_map.shape[0], src.shape[1]), dtype=src.dtype, device=src.device)
    threads, stream = _native.launch_args(src.device, row_id_map.numel() * src.shape[1])
    _native.kernels().moe_combine(src, row_id_map, weights, out, threads, stream)
    return out


@_combine.register_fake
def _(src, row_id_map, weights):
    return src.new_empty((row_id_map.shape[0], src.shape[1]))


@torch.library.custom_op("nemocore::moe_combine_wgrad", mutates_args=())
def _combine_wgrad(dy: Tensor, src: Tensor, row_id_map: Tensor) -> Tensor:
    dw = torch.empty(row_id_map.shape, dtype=_acc(src.dtype), device=src.device)
    threads, stream = _native.launch_args(src.device, row_id_map.numel() * src.shape[1])
    _native.kernels().moe_combine_wgrad(dy, src, row_id_map, dw, threads, stream)
    return dw


@_combine_wgrad.register_fake
def _(dy, src, row_id_map):
    return src.new_empty(row_id_map.shape, dtype=_acc(src.dtype))


def _source_rows(row_id_map: Tensor) -> Tensor:
    """The inverse of a bijective row_id_map: for each row, the flat (token * k + slot) it holds."""
    flat = row_id_map.reshape(-1)
    source = torch.empty_like(flat)
    source[flat] = torch.arange(flat.shape[0], device=flat.device)
    return source


# ---- permute ----------------------------------------------------------------------------------


@torch.library.custom_op("nemocore::moe_sort", mutates_args=())
def _moe_sort(topk_ids: Tensor, num_experts: int) -> tuple[Tensor, Tensor, Tensor]:
    T, k = topk_ids.shape
    if topk_ids.is_cuda:  # a stable sort keeps token order within an expert, like the CPU's
        flat = topk_ids.reshape(-1)
        source = torch.sort(flat, stable=True).indices
        row_id_map = _source_rows(source.reshape(T, k))  # the inverse of the inverse
        counts = torch.bincount(flat.long(), minlength=num_experts).cpu()
    else:
        counts = torch.empty(num_experts, dtype=torch.int64)
        row_id_map = torch.empty((T, k), dtype=torch.int64)
        source = torch.empty(T * k, dtype=torch.int64)
        threads, _ = _native.launch_args(topk_ids.device, topk_ids.numel() * 16)
        _native.kernels().moe_sort(topk_ids.contiguous(), counts, row_id_map, source, threads)
    return row_id_map.reshape(T, k), torch.div(source, k, rounding_mode="floor"), counts


@_moe_sort.register_fake
def _(topk_ids, num_experts):
    T, k = topk_ids.shape
    return (
        topk_ids.new_empty((T, k), dtype=torch.int64),
        topk_ids.new_empty((T * k,), dtype=torch.int64),
        torch.empty(num_experts, dtype=torch.int64, device="cpu"),
    )


@torch.library.custom_op("nemocore::moe_permute", mutates_args=())
def _moe_permute(
    hidden: Tensor, topk_ids: Tensor, num_experts: int
) -> tuple[Tensor, Tensor, Tensor]:
    row_id_map, token_of_row, counts = _moe_sort(topk_ids, num_experts)
    return _gather(hidden, token_of_row, None), row_id_map, counts


@_moe_permute.register_fake
def _(hidden, topk_ids, num_experts):
    T, k = topk_ids.shape
    return (
        hidden.new_empty((T * k, hidden.shape[1])),
        topk_ids.new_empty((T, k), dtype=torch.int64),
        torch.empty(num_experts, dtype=torch.int64, device="cpu"),
    )


def _permute_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1], output[2])


def _permute_backward(ctx, dpermuted, _dmap, _dcounts):
    (row_id_map,) = ctx.saved_tensors
    return _combine(dpermuted.contiguous(), row_id_map, None), None, None


_moe_permute.register_autograd(_permute_backward, setup_context=_permute_setup)


def moe_permute(
    hidden: Tensor, topk_ids: Tensor, num_experts: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Gathers every token once per expert it was routed to, grouped by expert.

    The (token, slot) pairs are stably sorted by expert id, so within an expert tokens keep
    their order and results are deterministic.

    Args:
        hidden: (T, d) tokens, float32, bfloat16, float16 or float64, any strides.
        topk_ids: (T, k) int32 or int64 expert ids in [0, num_experts), on hidden's device.
        num_experts: E; defaults to ``topk_ids.max() + 1`` (pass it: experts that got no token
            still need a zero in ``tokens_per_expert``, and the max costs a device sync).

    Returns:
        permuted: (T*k, d), rows of expert 0 first; differentiable in ``hidden``.
        row_id_map: (T, k) int64, the row of ``permuted`` holding token t's copy for slot j.
        tokens_per_expert: (E,) int64 on the CPU, ready to be ``grouped_mm``'s batch_sizes.
    """
    _checks.tensor(hidden, "hidden", ndim=2, dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor(topk_ids, "topk_ids", ndim=2, dtypes=_ID_DTYPES, device=hidden.device)
    if topk_ids.shape[0] != hidden.shape[0]:
        raise ValueError(
            f"topk_ids: expected {hidden.shape[0]} rows (one per token of hidden), "
            f"got {_checks.describe(topk_ids)}"
        )
    compiling = torch.compiler.is_compiling()
    if num_experts is None:
        if compiling:
            raise ValueError("num_experts: required under torch.compile")
        num_experts = int(topk_ids.max()) + 1 if topk_ids.numel() else 1
    if num_experts < 1:
        raise ValueError(f"num_experts: must be >= 1, got {num_experts}")
    _check_cuda_ids(topk_ids, num_experts, "topk_ids: expert ids", "num_experts")
    return _moe_permute(hidden, topk_ids, int(num_experts))


def moe_sort(topk_ids: Tensor, num_experts: int) -> tuple[Tensor, Tensor, Tensor]:
    """``moe_permute``'s routing without the copy, for ``grouped_mm(..., a_rows=...)``.

    Args:
        topk_ids: (T, k) int32 or int64 expert ids in [0, num_experts).
        num_experts: E.

    Returns:
        row_id_map: (T, k) int64, as from ``moe_permute``.
        token_of_row: (T*k,) int64, the token each permuted row copies (``moe_permute``'s
            ``permuted == hidden[token_of_row]``), on topk_ids' device.
        tokens_per_expert: (E,) int64 on the CPU.
    """
    _checks.tensor(topk_ids, "topk_ids", ndim=2, dtypes=_ID_DTYPES)
    if num_experts < 1:
        raise ValueError(f"num_experts: must be >= 1, got {num_experts}")
    _check_cuda_ids(topk_ids, num_experts, "topk_ids: expert ids", "num_experts")
    return _moe_sort(topk_ids, int(num_experts))


# ---- unpermute --------------------------------------------------------------------------------


@torch.library.custom_op("nemocore::moe_unpermute", mutates_args=())
def _moe_unpermute(permuted: Tensor, row_id_map: Tensor, topk_weights: Tensor | None) -> Tensor:
    return _combine(permuted, row_id_map, topk_weights)


@_moe_unpermute.register_fake
def _(permuted, row_id_map, topk_weights):
    return permuted.new_empty((row_id_map.shape[0], permuted.shape[1]))


def _unpermute_setup(ctx, inputs, output):
    permuted, row_id_map, weights = inputs
    ctx.save_for_backward(permuted, row_id_map, weights)


def _unpermute_backward(ctx, dy):
    permuted, row_id_map, weights = ctx.saved_tensors
    dy = dy.contiguous()
    k = row_id_map.shape[1]
    source = _source_rows(row_id_map)
    dpermuted = dweights = None
    if ctx.needs_input_grad[0]:  # each row receives its token's gradient times its weight
        scale = weights.reshape(-1)[source] if weights is not None else None
        dpermuted = _gather(dy, torch.div(source, k, rounding_mode="floor"), scale)
    if weights is not None and ctx.needs_input_grad[2]:
        dweights = _combine_wgrad(dy, permuted, row_id_map)
    return dpermuted, None, dweights


_moe_unpermute.register_autograd(_unpermute_backward, setup_context=_unpermute_setup)


def moe_unpermute(
    permuted: Tensor, row_id_map: Tensor, topk_weights: Tensor | None = None
) -> Tensor:
    """Brings each token's k expert outputs back and sums them with their router weights.

    Args:
        permuted: (T*k, d) expert outputs in ``moe_permute``'s row order.
        row_id_map: (T, k) int64 from ``moe_permute``: a one-to-one map onto permuted's rows.
        topk_weights: (T, k) combine weights (any float dtype; used in float32, float64 for
            float64 ``permuted``), or None for a plain sum.

    Returns:
        (T, d) in permuted's dtype,
        ``out[t] = sum_j topk_weights[t, j] * permuted[row_id_map[t, j]]`` summed in float32
        in slot order. Differentiable in ``permuted`` and ``topk_weights``.
    """
    _checks.tensor(permuted, "permuted", ndim=2, dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor(row_id_map, "row_id_map", ndim=2, dtypes=(torch.int64,), device=permuted.device)
    T, k = row_id_map.shape
    if T * k != permuted.shape[0]:
        raise ValueError(
            f"permuted: expected {T * k} rows (tokens * top-k of row_id_map "
            f"{tuple(row_id_map.shape)}), got {_checks.describe(permuted)}"
        )
    if not torch.compiler.is_compiling() and row_id_map.numel():
        flat = row_id_map.reshape(-1)
        if (
            int(flat.min()) < 0
            or int(flat.max()) >= T * k
            or bool((torch.bincount(flat, minlength=T * k) != 1).any())
        ):
            raise ValueError(
                "row_id_map: expected each row of permuted exactly once (a map from moe_permute)"
            )
    if topk_weights is not None:
        _checks.tensor(
            topk_weights,
            "topk_weights",
            shape=(T, k),
            dtypes=_checks.FLOAT_DTYPES,
            device=permuted.device,
        )
        topk_weights = topk_weights.to(_acc(permuted.dtype)).contiguous()
    return _moe_unpermute(permuted, row_id_map.contiguous(), topk_weights)
