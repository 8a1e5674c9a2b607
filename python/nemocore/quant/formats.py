"""The low-precision element and scale formats (kernels.md 4.1-4.3, 4.8, 4.11).

- **E2M1** (NVFP4 elements): 1 sign, 2 exponent (bias 1), 1 mantissa bit, no inf/NaN. Code
  ``c`` in ``0..15``: bit 3 is the sign, ``c & 7`` indexes ``0, 0.5, 1, 1.5, 2, 3, 4, 6``
  (code 8 is -0). Round-to-nearest-even picks the even code at a tie.
- **Packing**: two codes per byte along the last dimension, **even element in the low
  nibble**: ``byte[i] = code[2i] | code[2i + 1] << 4``, the order of torchao's ``pack_uint4``,
  Transformer Engine and cuBLAS (``torch.float4_e2m1fn_x2`` views the same bytes).
- **E4M3** (block scales, FP8 elements): torch's ``float8_e4m3fn`` (bias 7, max 448, no inf);
  block scales are stored as its raw bytes in ``uint8`` tensors so every torch op works on them.
- **Swizzled scales**: the ``128 x 4`` tile layout cuBLAS/CUTLASS block-scaled GEMMs read on
  Blackwell (``to_swizzled_scales`` / ``from_swizzled_scales``).
"""

from __future__ import annotations

import torch
from torch import Tensor

E2M1_MAX = 6.0
E4M3_MAX = 448.0
E5M2_MAX = 57344.0
E4M3_MIN_NORMAL = 2.0**-6  # torchao's lower clamp on block scales (finfo(e4m3).tiny)
BLOCK = 16  # NVFP4 block length (elements sharing one E4M3 scale)

# Magnitudes of the eight E2M1 codes 0..7.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)

# RNE onto the E2M1 grid as threshold compares on the magnitude (kernels.md 4.4): the code is
# the number of thresholds passed. A midpoint belongs to the even neighbour, so the compare is
# strict (>) where the lower neighbour is even and inclusive (>=) where the upper one is.
E2M1_RNE_THRESHOLDS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True),
                       (2.5, False), (3.5, True), (5.0, False))  # fmt: skip


def e2m1_table(device: torch.device | str = "cpu") -> Tensor:
    """(16,) float32: the value of each E2M1 code, negatives in 8..15 (code 8 is -0.0)."""
    pos = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=device)
    return torch.cat([pos, -pos])


def e2m1_round_magnitude(av: Tensor) -> Tensor:
    """Codes 0..7 (uint8) of magnitudes ``av`` (float32, already clamped to [0, 6]), RNE.

    NaN maps to 0 (no threshold compares true), which is what TE's reference does.
    """
    code = torch.zeros(av.shape, dtype=torch.uint8, device=av.device)
    for threshold, inclusive in E2M1_RNE_THRESHOLDS:
        code += (av >= threshold) if inclusive else (av > threshold)
    return code


def e2m1_decode(codes: Tensor) -> Tensor:
    """float32 values of uint8 codes 0..15 (any shape)."""
    return e2m1_table(codes.device)[codes.long()]


def pack_nibbles(codes: Tensor) -> Tensor:
    """(..., 2n) uint8 codes -> (..., n) uint8 bytes, even element in the low nibble."""
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_nibbles: last dim must be even, got shape {tuple(codes.shape)}")
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_nibbles(packed: Tensor) -> Tensor:
    """(..., n) uint8 bytes -> (..., 2n) uint8 codes (inverse of ``pack_nibbles``)."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=-1).flatten(-2)


def e4m3_from_float(s: Tensor) -> Tensor:
    """float32 -> E4M3 bytes (uint8), RNE; callers clamp to [0, 448] first (torch's cast
    saturates in recent versions, older ones produced NaN above 448)."""
    return s.to(torch.float8_e4m3fn).view(torch.uint8)


def e4m3_to_float(b: Tensor) -> Tensor:
    """E4M3 bytes (uint8) -> float32."""
    return b.view(torch.float8_e4m3fn).to(torch.float32)


# ---- swizzled scale layout (Blackwell block-scaled GEMM) -------------------------------------


def to_swizzled_scales(scales: Tensor) -> Tensor:
    """Row-major (rows, cols) block scales -> the cuBLAS/CUTLASS ``128 x 4`` tile layout.

    The matrix is zero-padded to multiples of (128, 4); each 128x4 tile becomes 512 contiguous
    bytes in which tile row ``r``, column ``j`` sits at ``(r % 32) * 16 + (r // 32) * 4 + j``;
    tiles are stored row-block-major. Returns ``(ceil(rows/128) * 32, ceil(cols/4) * 16)`` of
    the input dtype (the shape torchao's ``to_blocked`` gives).
    """
    rows, cols = scales.shape
    rb, cb = -(-rows // 128), -(-cols // 4)
    padded = scales.new_zeros(rb * 128, cb * 4)
    padded[:rows, :cols] = scales
    # (rb, 4 row-groups of 32, 32, cb, 4) -> (rb, cb, 32, 4 row-groups, 4 cols)
    tiles = padded.view(rb, 4, 32, cb, 4).permute(0, 3, 2, 1, 4)
    return tiles.reshape(rb * 32, cb * 16)


def from_swizzled_scales(swizzled: Tensor, rows: int, cols: int) -> Tensor:
    """Inverse of ``to_swizzled_scales``: back to row-major (rows, cols)."""
    rb, cb = -(-rows // 128), -(-cols // 4)
    if swizzled.numel() != rb * cb * 512:
        raise ValueError(
            f"from_swizzled_scales: {swizzled.numel()} scales cannot hold a ({rows}, {cols}) "
            f"matrix padded to ({rb * 128}, {cb * 4})"
        )
    tiles = swizzled.reshape(rb, cb, 32, 4, 4).permute(0, 3, 2, 1, 4)
    return tiles.reshape(rb * 128, cb * 4)[:rows, :cols]
