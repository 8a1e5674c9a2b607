"""Pure-PyTorch references of the MoE ops (kernels.md section 3): grouped GEMM, token permute
and unpermute, written as loops over experts and tokens so they can be checked by eye.

Letters: T tokens, k top-k, E experts, d width, K/N the GEMM's reduction/output widths.
Arithmetic runs in float32 (float64 for float64 inputs), outputs come back in the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def grouped_mm(a: Tensor, b: Tensor, batch_sizes: Tensor, trans_b: bool = False) -> Tensor:
    """``out[rows of e] = a[rows of e] @ b[e]`` (``b[e].T`` with ``trans_b``), one matmul each.

    a: (T, K) with its rows sorted by expert; b: (E, K, N), or (E, N, K) with ``trans_b``;
    batch_sizes: (E,) rows per expert. Returns (T, N).
    """
    acc = _acc(a.dtype)
    n = b.shape[1] if trans_b else b.shape[2]
    out = torch.zeros(a.shape[0], n, dtype=acc, device=a.device)
    start = 0
    for e, rows in enumerate(batch_sizes.tolist()):
        w = b[e].to(acc)
        out[start : start + rows] = a[start : start + rows].to(acc) @ (w.T if trans_b else w)
        start += rows
    return out.to(a.dtype)


def moe_permute(
    hidden: Tensor, topk_ids: Tensor, num_experts: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Gathers each token once per selected expert, in expert order (ties keep token order).

    hidden: (T, d); topk_ids: (T, k). Returns ``permuted (T*k, d)``, ``row_id_map (T, k)`` (the
    row of ``permuted`` that holds token t's copy for slot j) and ``tokens_per_expert (E,)``.
    """
    T, k = topk_ids.shape
    E = int(topk_ids.max()) + 1 if num_experts is None else num_experts
    ids = topk_ids.tolist()
    row_id_map = torch.empty(T, k, dtype=torch.int64)
    rows = []
    for e in range(E):  # expert-major, then token, then slot: a stable sort by expert
        for t in range(T):
            for j in range(k):
                if ids[t][j] == e:
                    row_id_map[t, j] = len(rows)
                    rows.append(t)
    permuted = hidden[torch.tensor(rows, dtype=torch.int64, device=hidden.device)]
    counts = torch.bincount(topk_ids.flatten().cpu().long(), minlength=E)
    return permuted.reshape(T * k, hidden.shape[1]), row_id_map.to(hidden.device), counts


def moe_unpermute(
    permuted: Tensor, row_id_map: Tensor, topk_weights: Tensor | None = None
) -> Tensor:
    """``out[t] = sum_j topk_weights[t, j] * permuted[row_id_map[t, j]]``; weights default to 1.

    permuted: (T*k, d); row_id_map, topk_weights: (T, k). Returns (T, d) in permuted's dtype.
    """
    acc = _acc(permuted.dtype)
    T, k = row_id_map.shape
    out = torch.zeros(T, permuted.shape[1], dtype=acc, device=permuted.device)
    for t in range(T):
        for j in range(k):
            w = 1.0 if topk_weights is None else topk_weights[t, j].to(acc)
            out[t] += w * permuted[row_id_map[t, j]].to(acc)
    return out.to(permuted.dtype)


def moe_experts(
    hidden: Tensor, topk_ids: Tensor, topk_weights: Tensor, up: Tensor, down: Tensor
) -> Tensor:
    """Routed experts token by token: ``y[t] = sum_j w[t, j] down_e(relu(up_e(hidden[t]))^2)``.

    hidden: (T, d); topk_ids, topk_weights: (T, k); up: (E, f, d); down: (E, d, f).
    Returns (T, d) in hidden's dtype (computed in float32/float64).
    """
    acc = _acc(hidden.dtype)
    out = torch.zeros(hidden.shape, dtype=acc, device=hidden.device)
    for t in range(hidden.shape[0]):
        for j in range(topk_ids.shape[1]):
            e = int(topk_ids[t, j])
            h = torch.relu(up[e].to(acc) @ hidden[t].to(acc)) ** 2
            out[t] += topk_weights[t, j].to(acc) * (down[e].to(acc) @ h)
    return out.to(hidden.dtype)
