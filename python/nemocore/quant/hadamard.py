"""The 16-point random Hadamard transform applied to Wgrad operands (kernels.md 4.6).

``T = D H16 / 4`` with ``H16`` the Sylvester Hadamard matrix (entries +-1) and ``D`` a diagonal
of 16 signs; ``T`` is orthogonal (``T @ T.T = I``), so transforming each 16-element block of
the reduction dimension of *both* GEMM operands leaves their product unchanged while spreading
a block's outliers over all 16 elements before quantization.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# Transformer Engine's reference hard-codes this sign vector; it is nemocore's default so that
# results can be compared with TE's.
TE_SIGNS = (1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1)

HadamardSpec = bool | int | Tensor


@functools.cache
def _sylvester16() -> Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < 16:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def hadamard_signs(spec: HadamardSpec) -> Tensor:
    """(16,) float32 signs from ``spec``: ``True`` -> TE's vector, an ``int`` -> random signs
    drawn from a ``torch.Generator`` seeded with it, a (16,) tensor of +-1 -> itself."""
    if isinstance(spec, Tensor):
        signs = spec.detach().to(torch.float32).cpu().flatten()
        if signs.numel() != 16 or not bool(((signs == 1) | (signs == -1)).all()):
            raise ValueError(f"hadamard: expected 16 signs (+1/-1), got {spec!r}")
        return signs
    if isinstance(spec, bool):
        if not spec:
            raise ValueError("hadamard_signs: hadamard=False has no sign vector")
        return torch.tensor(TE_SIGNS, dtype=torch.float32)
    if isinstance(spec, int):
        g = torch.Generator().manual_seed(spec)
        return torch.randint(0, 2, (16,), generator=g).to(torch.float32) * 2 - 1
    raise TypeError(f"hadamard: expected a bool, an int seed or 16 signs, got {type(spec)}")


def hadamard_matrix(signs: Tensor) -> Tensor:
    """(16, 16) float32 ``T = diag(signs) @ H16 / 4`` (orthogonal)."""
    return signs.to(torch.float32).cpu()[:, None] * _sylvester16() / 4


def rht(x: Tensor, signs: Tensor, *, inverse: bool = False) -> Tensor:
    """``x @ T`` (``x @ T.T`` with ``inverse``) on each 16-block of the last dim, in float32.

    x: (..., K) with ``K % 16 == 0``. Returns float32 (..., K).
    """
    if x.shape[-1] % 16:
        raise ValueError(f"rht: last dim must be a multiple of 16, got {tuple(x.shape)}")
    t = hadamard_matrix(signs).to(x.device)
    if inverse:
        t = t.T
    blocks = x.to(torch.float32).reshape(*x.shape[:-1], x.shape[-1] // 16, 16)
    return (blocks @ t).reshape(x.shape)
