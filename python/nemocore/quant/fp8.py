"""FP8 quantization and GEMM (kernels.md 4.11, model.md 6.1).

Current scaling: ``scale = fmax / amax`` (E4M3: 448, E5M2: 57344) of the tensor
(``scaling="tensor"``), of each 1 x ``block`` tile along the last dim (``"block"``, activations
in DeepSeek-V3 / DeepGEMM style) or of each ``block x block`` tile (``"block2d"``, weights);
elements are cast with saturation, round to nearest even; the inverse scale is stored.

Backends: quantization is torch's own ``float8`` casts after an explicit clamp (they are
vectorised on the CPU and GPU), i.e. ``nemocore.ref.quant.fp8_quantize``; ``fp8_mm`` runs
``torch._scaled_mm`` on a GPU with FP8 tensor cores for per-tensor scales, and otherwise
dequantizes and runs an fp32 GEMM.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nemocore.quant.tensor import FP8Tensor
from nemocore.ref import quant as ref

SCALINGS = ("tensor", "block", "block2d")


def fp8_quantize(
    x: Tensor, fmt: str = "e4m3", scaling: str = "tensor", block: int = 128
) -> FP8Tensor:
    """Quantize x: (..., K) to FP8 with current scaling; see the module docstring.

    fmt: ``"e4m3"`` or ``"e5m2"``; scaling: ``"tensor"``, ``"block"`` (1 x block tiles along
    the last dim) or ``"block2d"`` (block x block tiles over the last two dims, rows being all
    leading dims). Non-finite input raises ValueError.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point torch.Tensor, got {x!r:.80}")
    if fmt not in ref.FP8_FORMATS:
        raise ValueError(f"fmt: expected 'e4m3' or 'e5m2', got {fmt!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling: expected one of {SCALINGS}, got {scaling!r}")
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"block: expected a positive int, got {block!r}")
    if x.dim() < 1:
        raise ValueError("x: expected at least one dimension")
    return ref.fp8_quantize(x, fmt, scaling, block)


def dequantize(t: FP8Tensor, dtype: torch.dtype) -> Tensor:
    return ref.fp8_dequantize(t, dtype)


def _scaled_mm_ok(a: FP8Tensor, b: FP8Tensor) -> bool:
    if a.data.device.type != "cuda" or a.scaling != "tensor" or b.scaling != "tensor":
        return False
    if torch.cuda.get_device_capability(a.data.device) < (8, 9):
        return False
    _m, k = a.shape
    n = b.shape[0]
    return k % 16 == 0 and n % 16 == 0 and not (a.fmt == b.fmt == "e5m2")


def fp8_mm(a: FP8Tensor, b: FP8Tensor, out_dtype: torch.dtype | None = None) -> Tensor:
    """``a @ b.T``: a (M, K), b (N, K) FP8 tensors. Returns (M, N) in ``out_dtype``
    (default: a's original dtype), accumulated in fp32."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, FP8Tensor):
            raise TypeError(f"{name}: expected an FP8Tensor, got {type(t).__name__}")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"fp8_mm: expected a (M, K) and b (N, K) with the same K, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    out_dtype = out_dtype or a.dtype
    if _scaled_mm_ok(a, b):
        return torch._scaled_mm(
            a.data, b.data.T, scale_a=a.scale_inv.float(), scale_b=b.scale_inv.float(),
            out_dtype=out_dtype,
        )  # fmt: skip
    return (a.dequantize(torch.float32) @ b.dequantize(torch.float32).T).to(out_dtype)
